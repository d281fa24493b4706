"""Benchmark corpora by recipe kind: adding a kind is one writer function and one entry in KINDS."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.synthetic.hex import write_corpus as write_hex

DONE = ".complete"
"""Marker written after a corpus is complete; discovery skips dot-files, so it is never an input."""

Writer = Callable[[Path, int, str, int], None]
"""``write(folder, files, shape, seed)``: write ``files`` input files of the given shape, where
``normal`` is the small file used for throughput and memory, ``large`` the bigger file of the
second throughput corpus and ``tiny`` the smallest valid file (for the no-op re-run at 100k files)."""


@dataclass(frozen=True)
class CorpusKind:
    """How to make benchmark inputs of one recipe kind and the recipe tables that read them."""

    kind: str
    pattern: str
    write: Writer
    settings: Callable[[str], dict[str, Any]]
    """The recipe's [process] settings for files of a shape."""
    describe: Callable[[str], str]
    """What one file of a shape holds, e.g. ``2 games of 11x11``."""


HEX_SHAPES = {"normal": (2, 11), "large": (25, 13), "tiny": (1, 3)}
"""Hex files by shape: (games per file, board size). A random 11x11 game has ~110 positions."""


def _write_hex(folder: Path, files: int, shape: str, seed: int) -> None:
    games, size = HEX_SHAPES[shape]
    write_hex(folder, files, games, size, seed)


def hex_settings(shape: str) -> dict[str, Any]:
    return {"board_size": HEX_SHAPES[shape][1], "position_selector": "all"}


def hex_describe(shape: str) -> str:
    games, size = HEX_SHAPES[shape]
    return f"{games} games of {size}x{size}"


KINDS: dict[str, CorpusKind] = {
    "hex": CorpusKind("trmph", "**/*.trmph", _write_hex, hex_settings, hex_describe),
}
"""Benchmarked kinds by name."""


def corpus(scratch: Path, name: str, files: int, shape: str = "normal", seed: int = 0) -> tuple[Path, CorpusKind]:
    """The input folder of ``files`` files of kind ``name``, generated once and reused by later runs."""
    spec = KINDS[name]
    folder = scratch / "corpora" / f"{name}-{shape}-{files}-s{seed}"
    if not (folder / DONE).exists():
        shutil.rmtree(folder, ignore_errors=True)
        spec.write(folder, files, shape, seed)
        (folder / DONE).touch()
    return folder, spec


def recipe_tables(spec: CorpusKind, shape: str, input_dir: Path, output_dir: Path,
                  compression: str | None = None) -> dict:
    """Recipe tables for a benchmark dataset over ``input_dir`` (engine defaults: 500 files per batch and,
    unless ``compression`` is given, the recipe's default compression of the batches)."""
    return {
        "dataset": {"name": output_dir.name, "kind": spec.kind, "input_dir": str(input_dir),
                    "pattern": spec.pattern, "output_dir": str(output_dir)},
        "process": spec.settings(shape),
        **({"batch": {"compression": compression}} if compression else {}),
    }
