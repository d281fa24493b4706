"""Finding input files: one walk of the input tree, sorted, with size and mtime; special files named, never opened."""

from __future__ import annotations

import errno
import gc
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.kinds.base import Kind

FILE_TYPES = {stat.S_IFIFO: "FIFO", stat.S_IFCHR: "character device", stat.S_IFBLK: "block device",
              stat.S_IFSOCK: "socket"}


@dataclass(frozen=True, slots=True)
class InputFile:
    """An input path relative to the input folder, with its size and mtime (-1 if unknown).

    ``problem`` says why it cannot be read as a file ("not a regular file (FIFO)", "symbolic
    link loop", "folder not readable: Permission denied"); such a path is never opened.
    """

    relative: str
    size: int
    mtime_ns: int
    problem: str | None = None


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


def folder_filter(pattern: str) -> Callable[[str], bool]:
    """Whether a folder (its relative path, ending in ``/``) can hold a path matching ``pattern``."""
    parts = [glob_regex(part) if "**" not in part else None for part in pattern.split("/")]

    def may_hold(folder: str) -> bool:
        names = folder[:-1].split("/")
        for part, name in zip(parts, names, strict=False):
            if part is None:
                return True
            if not part.match(name):
                return False
        return len(names) < len(parts)

    return may_hold


def stat_problem(exc: OSError) -> str:
    """Why a path cannot be stat-ed, in words."""
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOENT:
        return "broken symbolic link: its target does not exist"
    return f"cannot stat: {exc.strerror}"


def mode_problem(mode: int) -> str | None:
    """Why a path of this mode is not read as an input file, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "symbolic link to a folder (links to folders are not followed)"
    return f"not a regular file ({FILE_TYPES.get(stat.S_IFMT(mode), 'unknown type')})"


def discover(input_dir: Path, pattern: str) -> list[InputFile]:
    """Every path below ``input_dir`` matching ``pattern``, sorted by relative path.

    Hidden files (``.name``) are left out; folders that cannot hold a match are not entered;
    symlinked folders are not followed, so loops are harmless. What matches but is no
    readable regular file (a FIFO, socket or device, a link to one, a link loop, a broken
    link, a link to a folder) and every folder that could hold matches but cannot be
    listed (as ``<folder>/``) is listed with its ``problem``, so that it is recorded as a
    failure instead of vanishing, hanging the run or filling memory; nothing is opened.
    One loop over ``os.scandir`` entries, as this runs on every start of the pipeline, with
    the garbage collector paused: it would otherwise scan the growing list of files again and
    again (100k files: 0.1 s of 0.6 s), and nothing made here holds a cycle.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        return _walk(input_dir, pattern)
    finally:
        if paused:
            gc.enable()


def _walk(input_dir: Path, pattern: str) -> list[InputFile]:
    """:func:`discover`'s walk."""
    match, may_hold = glob_regex(pattern).match, folder_filter(pattern)
    found = []
    folders = [(str(input_dir), "")]
    while folders:
        folder, prefix = folders.pop()
        try:
            entries = os.scandir(folder)
        except OSError as exc:
            found.append(InputFile(prefix or "./", -1, -1, f"folder not readable: {exc.strerror}"))
            continue
        with entries:  # iterated, not listed: a folder of 100k files never holds 100k entries at once
            for entry in entries:
                relative = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    if may_hold(relative + "/"):
                        folders.append((entry.path, relative + "/"))
                    continue
                if entry.name.startswith(".") or not match(relative):
                    continue
                try:
                    info = entry.stat()
                except OSError as exc:
                    found.append(InputFile(relative, -1, -1, stat_problem(exc)))
                    continue
                found.append(InputFile(relative, info.st_size, info.st_mtime_ns, mode_problem(info.st_mode)))
    found.sort(key=lambda f: f.relative)
    return found


def refusal(file: InputFile, kind: Kind) -> tuple[str, str] | None:
    """The error class and reason for which ``file`` is not to be read by ``kind``, or None."""
    if file.problem:
        return "NotAFile", file.problem
    if kind.max_file_bytes is not None and file.size > kind.max_file_bytes:
        return "FileTooLarge", f"file is {file.size} bytes, more than the {kind.name} limit of {kind.max_file_bytes}"
    return None
