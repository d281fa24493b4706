"""Luigi targets that check themselves: a stage's record matched against the plan."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import luigi


class CheckedTarget(luigi.Target):
    """An output that exists only when its check passes (record present, fingerprint and sizes match)."""

    def __init__(self, path: Path, check: Callable[[], bool]):
        self.path = path
        self._check = check

    def exists(self) -> bool:
        return self._check()

    def __repr__(self) -> str:
        return f"CheckedTarget({self.path})"
