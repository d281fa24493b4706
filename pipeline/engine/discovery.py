"""Finding input files: one walk of the input tree, sorted, with size and mtime."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
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


def discover(input_dir: Path, pattern: str) -> list[InputFile]:
    """Every file below ``input_dir`` matching ``pattern``, sorted by relative path.

    Hidden files (``.name``) are left out; symlinked folders are not followed, so loops
    are harmless. A file that cannot be stat-ed (a broken link) is still listed, with
    size -1, so that processing records why it failed instead of it vanishing silently.
    One loop over ``os.scandir`` entries, as this runs on every start of the pipeline.
    """
    match = glob_regex(pattern).match
    found = []
    folders = [(str(input_dir), "")]
    while folders:
        folder, prefix = folders.pop()
        try:
            entries = os.scandir(folder)
        except OSError:
            continue
        with entries:  # iterated, not listed: a folder of 100k files never holds 100k entries at once
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.append((entry.path, f"{prefix}{entry.name}/"))
                    continue
                relative = prefix + entry.name
                if entry.name.startswith(".") or not match(relative) or entry.is_dir():
                    continue
                try:
                    stat = entry.stat()
                    found.append(InputFile(relative, stat.st_size, stat.st_mtime_ns))
                except OSError:
                    found.append(InputFile(relative, -1, -1))
    found.sort(key=lambda f: f.relative)
    return found
