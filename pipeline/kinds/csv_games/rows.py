"""The csv_games kind's reading layer: CSV bytes into columns, vectorised.

Arrow reads the needed columns in one block; what it skips (a ragged row) or cannot convert
(a value of the wrong type) is reported by row, and :func:`row_lines` maps rows to their
1-based physical lines (line ends inside quoted fields included).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pipeline.kinds.csv_games import Columns


def row_lines(data: bytes) -> tuple[np.ndarray, np.ndarray, bool]:
    """First physical line (1-based) and byte length of each non-empty CSV row, header first.

    Rows end, as Arrow's reader ends them, at a line end outside a quoted field (a quote
    opens one only at the start of a field; ``""`` inside it is a quote). The third item
    says whether a quoted field is still open at the end of the data (a truncated file).
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    is_end = (buf == 10) | ((buf == 13) & (np.append(buf[1:], 0) != 10))
    depth = np.zeros(buf.size + 1, dtype=np.int64)
    quotes = np.flatnonzero(buf == ord('"')).tolist()
    opened, i = None, 0
    while i < len(quotes):  # only quote characters are looked at one by one
        at = quotes[i]
        if opened is None:
            opened = at if at == 0 or buf[at - 1] in (44, 10, 13) else None
        elif i + 1 < len(quotes) and quotes[i + 1] == at + 1:
            i += 1
        else:
            depth[opened], depth[at], opened = depth[opened] + 1, depth[at] - 1, None
        i += 1
    if opened is not None:
        depth[opened] += 1
    ends = np.flatnonzero(is_end & (np.cumsum(depth)[:-1] == 0))
    starts, stops = np.append(0, ends + 1), np.append(ends, buf.size)
    lengths = stops - starts - ((stops > starts) & (buf[np.maximum(stops - 1, 0)] == 13) if buf.size else 0)
    lines = 1 + np.append(0, np.cumsum(is_end))[starts]
    return lines[lengths > 0], lengths[lengths > 0], opened is not None


def _cast(array: Any, to: Any, bad: list[int], offset: int = 0) -> list:
    """``array`` cast to type ``to`` in pieces; a value that does not convert is null, its index put in ``bad``."""
    import pyarrow as pa

    try:
        return [array.cast(to)]
    except pa.ArrowInvalid:
        if len(array) == 1:
            bad.append(offset)
            return [pa.nulls(1, to)]
        half = len(array) // 2
        return _cast(array.slice(0, half), to, bad, offset) + _cast(array.slice(half), to, bad, offset + half)


def read_table(data: bytes, columns: Columns, settings: Mapping[str, Any]
               ) -> tuple[dict[str, np.ndarray], list[tuple[int, str]], dict[int, str]]:
    """The needed columns of the CSV as numpy arrays (Arrow's vectorised reader).

    Also returns the rows Arrow skipped for their field count (Arrow's row number, counting
    the header as 1 and no empty line; and why) and the rows holding a value of the wrong
    type (their index among the rows read; and why). The file is one block, so no row is
    too long for Arrow; it is read again as text only when a value does not convert.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    types = columns.types(settings)
    ragged: list[tuple[int, str]] = []

    def skip(row: Any) -> str:
        ragged.append((row.number, f"row has {row.actual_columns} fields, the header {row.expected_columns}"))
        return "skip"

    def parse(column_types: dict[str, Any]) -> Any:
        ragged.clear()
        options = pacsv.ConvertOptions(column_types=column_types, include_columns=list(types),
                                       null_values=list(settings["missing_values"]),
                                       strings_can_be_null=True, quoted_strings_can_be_null=True)
        return pacsv.read_csv(pa.BufferReader(data), convert_options=options,
                              read_options=pacsv.ReadOptions(use_threads=False, block_size=max(len(data), 1 << 20)),
                              parse_options=pacsv.ParseOptions(invalid_row_handler=skip))

    wrong: dict[int, str] = {}
    try:
        table = parse(types)
    except pa.ArrowInvalid:
        try:
            table = parse(dict.fromkeys(types, pa.string()))
        except pa.ArrowInvalid as exc:
            raise ValueError(f"cannot parse: {exc}") from None
        for name, to in types.items():
            text, bad = table.column(name).combine_chunks(), []
            if to != pa.string():
                table = table.set_column(table.column_names.index(name), name, pa.concat_arrays(_cast(text, to, bad)))
            for row in bad:
                wrong.setdefault(row, f"{name}: {text[row].as_py()[:40]!r} is not a number")
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in types}, ragged, wrong
