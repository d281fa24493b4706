"""Decoding line-based text input: a line that is not text is a bad record of its own."""

from __future__ import annotations

from pipeline.kinds.base import RecordError


class NotTextError(ValueError):
    """The file is binary or not UTF-8 (most of its lines are not text)."""


def text_lines(data: bytes) -> tuple[list[tuple[int, str]], list[RecordError]]:
    """``(line number, line)`` of UTF-8 ``data``, and a ``NotTextError`` record per line that is not text.

    Lines end at ``\\n`` only (numbered as ``\\n`` are counted); a trailing ``\\r`` (CRLF) and
    a leading UTF-8 BOM are dropped; a lone ``\\r`` stays inside its line. A non-blank line
    holding a NUL byte or bytes that are not UTF-8 is recorded and left out; when such lines
    are most of the non-blank ones, the file is binary (or another encoding): ``NotTextError``.
    """
    raws = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    if raws[-1] == b"":
        raws.pop()
    lines, bad = [], []
    for number, raw in enumerate(raws, start=1):
        nul = raw.find(b"\0")
        try:
            if nul < 0:
                lines.append((number, raw.decode("utf-8").removesuffix("\r")))
                continue
            problem = f"NUL byte at column {nul + 1}"
        except UnicodeDecodeError as exc:
            problem = f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1} is not UTF-8"
        if raw.strip():
            bad.append((number, problem))
    texts = sum(1 for _, line in lines if line.strip())
    if len(bad) > texts:
        raise NotTextError(f"binary or not UTF-8: {len(bad)} of {len(bad) + texts} lines are not text; "
                           f"line {bad[0][0]}: {bad[0][1]}")
    return lines, [RecordError(line, "NotTextError", f"line is not text: {problem}") for line, problem in bad]
