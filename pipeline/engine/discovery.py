"""Finding input files: one walk of the input tree, sorted, with size and mtime."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class InputFile:
    """An input file by its path relative to the input folder, with its size and mtime."""

    relative: str
    size: int
    mtime_ns: int


def glob_regex(pattern: str) -> re.Pattern:
    """Compile a glob with ``**`` (any folders), ``*`` and ``?`` matching relative paths."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _walk(folder: str, prefix: str) -> Iterator[tuple[str, os.DirEntry]]:
    """Files below ``folder``; symlinked folders are not followed, so loops are harmless."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        relative = prefix + entry.name
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(entry.path, relative + "/")
        elif not entry.is_dir():
            yield relative, entry


def discover(input_dir: Path, pattern: str) -> list[InputFile]:
    """Every file below ``input_dir`` matching ``pattern``, sorted by relative path.

    A file that cannot be stat-ed (a broken link) is still listed, with size -1, so that
    processing records why it failed instead of it vanishing silently.
    """
    regex = glob_regex(pattern)
    found = []
    for relative, entry in _walk(str(input_dir), ""):
        if not regex.match(relative) or entry.name.startswith("."):
            continue
        try:
            stat = entry.stat()
            found.append(InputFile(relative, stat.st_size, stat.st_mtime_ns))
        except OSError:
            found.append(InputFile(relative, -1, -1))
    found.sort(key=lambda f: f.relative)
    return found
