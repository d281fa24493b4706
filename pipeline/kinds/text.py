"""Decoding text input files with clear errors for binary and non-UTF-8 content."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


class NotTextError(ValueError):
    """The file is binary or not UTF-8."""


def read_text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` of a UTF-8 file (a BOM is dropped, CRLF accepted)."""
    data = path.read_bytes()
    nul = data.find(b"\x00")
    if nul >= 0:
        raise NotTextError(f"binary file: NUL byte at offset {nul}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise NotTextError(f"not UTF-8: byte 0x{data[exc.start]:02x} on line {line}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        yield number, line
