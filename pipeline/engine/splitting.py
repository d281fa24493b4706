"""Which split a row goes to, and the train statistics of standardisation: plain numpy, no I/O.

A row's split is a hash of its group id and the seed (splitmix64), so no group straddles
splits and a group keeps its split when more data arrives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 mixer, vectorised over uint64 (wrapping arithmetic is intended)."""
    z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def split_key(settings: Mapping[str, Any]) -> list:
    """The settings a row's split depends on (fractions and seed), as batch statistics record them."""
    return [settings["train"], settings["val"], settings["test"], settings["seed"]]


def assign_splits(groups: np.ndarray, settings: Mapping[str, Any]) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) of each row from its group id and the seed."""
    with np.errstate(over="ignore"):
        seed = splitmix64(np.array([settings["seed"]], dtype=np.int64).view(np.uint64))
        unit = (splitmix64(groups.astype(np.uint64) ^ seed) >> np.uint64(11)) * (1.0 / (1 << 53))
    bounds = np.array([settings["train"], settings["train"] + settings["val"]])
    return np.searchsorted(bounds, unit, side="right").astype(np.int8)


class SplitTally:
    """A batch's split statistics: rows per split and, when standardising, the moments of the train rows of X.

    Fed file by file in row order, whether the rows are fresh or read back, so the same
    files give the same statistics bit for bit.
    """

    PENDING_ROWS = 1 << 20
    """Without moments, group ids are hashed this many rows at a time (one call instead of one per file)."""

    def __init__(self, settings: Mapping[str, Any], columns: int):
        self.settings = settings
        self.counts = np.zeros(3, dtype=np.int64)
        self.moments = RunningMoments(columns) if settings["normalize"] else None
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0

    def add(self, x: np.ndarray | None, groups: np.ndarray) -> None:
        if self.moments is None:
            self.pending.append(groups)
            self.pending_rows += len(groups)
            if self.pending_rows >= self.PENDING_ROWS:
                self._count()
            return
        where = assign_splits(groups, self.settings)
        self.counts += np.bincount(where, minlength=3)
        self.moments.update(x.reshape(len(x), -1)[where == 0])

    def _count(self) -> None:
        if self.pending:
            self.counts += np.bincount(assign_splits(np.concatenate(self.pending), self.settings), minlength=3)
        self.pending, self.pending_rows = [], 0

    def to_json(self) -> dict[str, Any]:
        self._count()
        return {"settings": split_key(self.settings), "rows": self.counts.tolist(),
                "train": self.moments.to_json() if self.moments else None}


class RunningMoments:
    """Mean and variance per column over streamed chunks (Chan's parallel update)."""

    def __init__(self, columns: int):
        self.count = 0
        self.mean = np.zeros(columns)
        self.m2 = np.zeros(columns)
        self.binary = np.ones(columns, dtype=bool)

    def update(self, chunk: np.ndarray) -> None:
        if not len(chunk):
            return
        values = chunk.astype(np.float64)
        n, mean = len(values), values.mean(axis=0)
        m2 = ((values - mean) ** 2).sum(axis=0)
        delta, total = mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + m2 + delta ** 2 * self.count * n / total
        self.count = total
        self.binary &= ((values == 0) | (values == 1)).all(axis=0)

    def combine(self, other: RunningMoments) -> None:
        """Add the rows ``other`` has seen (Chan's parallel combination)."""
        if not other.count:
            return
        delta, total = other.mean - self.mean, self.count + other.count
        self.mean = self.mean + delta * other.count / total
        self.m2 = self.m2 + other.m2 + delta ** 2 * self.count * other.count / total
        self.count = total
        self.binary &= other.binary

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean.tolist(), "m2": self.m2.tolist(), "binary": self.binary.tolist()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunningMoments:
        moments = cls(len(data["mean"]))
        moments.count, moments.mean, moments.m2 = int(data["count"]), np.array(data["mean"]), np.array(data["m2"])
        moments.binary = np.array(data["binary"], dtype=bool)
        return moments

    def result(self) -> dict[str, list]:
        std = np.sqrt(self.m2 / max(self.count, 1))
        normalize = ~self.binary & (std > 0)
        return {"mean": self.mean.tolist(), "std": std.tolist(), "normalize": normalize.tolist()}
