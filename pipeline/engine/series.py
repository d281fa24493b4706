"""Time-series engine: temporal chunk files, chunk × universe results, chronological splits.

Kind-independent pieces of a flow whose input is one long timestamp-sorted stream: its
output layout, strict ``"1-6,12"`` selections, period keys, streaming the stream into
``chunks/chunk_NNN_<period>.parquet``, reading neighbouring chunks row group by row group,
and writing a training set split by time in the engine's final-split layout.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import functools
import itertools
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.engine.layout import SPLITS
from pipeline.engine.storage import ArrayWriter, NpzWriter, atomic_open, atomic_path
from pipeline.errors import PipelineError

DAY_NS = 86_400 * 10**9


class SelectionError(PipelineError, ValueError):
    """A ``--chunks``/``--universes`` selection that is malformed or out of range."""


@dataclass(frozen=True)
class SeriesLayout:
    """Output paths of one time-series dataset, derived from its output folder only."""

    root: Path

    @property
    def chunks(self) -> Path:
        return self.root / "chunks"

    def chunk(self, index: int, period: str) -> Path:
        return self.chunks / f"chunk_{index:03d}_{period}.parquet"

    @property
    def chunk_metadata(self) -> Path:
        """Rows, time range and size per chunk and the input's tick accounting; written last."""
        return self.chunks / "metadata.json"

    @property
    def results(self) -> Path:
        return self.root / "results"

    def universe_results(self, universe: str) -> Path:
        return self.results / universe

    def result(self, universe: str, index: int) -> Path:
        return self.universe_results(universe) / f"chunk_{index:03d}.parquet"

    def result_timing(self, universe: str, index: int) -> Path:
        """Seconds and peak memory of the task that made the result (not part of the data)."""
        return self.universe_results(universe) / f"chunk_{index:03d}.json"

    @property
    def final(self) -> Path:
        return self.root / "final"

    def universe_final(self, universe: str) -> Path:
        return self.final / universe

    @staticmethod
    def patterns(folder: Path) -> Path:
        return folder / "final_patterns.parquet"

    @staticmethod
    def report(folder: Path) -> Path:
        return folder / "performance_report.md"

    @staticmethod
    def manifest(folder: Path) -> Path:
        return folder / "manifest.json"


_TOKEN = re.compile(r"(\d+)(?:-(\d+))?")


def parse_selection(text: str, what: str) -> tuple[int, ...]:
    """Numbers of a selection such as ``"1,5,10-15,20"`` (1-based, sorted); ``""`` selects all (empty tuple).

    Strict: each comma-separated item is ``N`` or ``N-M`` with 1 <= N <= M; anything else,
    and a number selected twice, raises :class:`SelectionError` naming the item.
    """
    if not text.strip():
        return ()
    chosen: list[int] = []
    for item in text.split(","):
        match = _TOKEN.fullmatch(item.strip())
        if not match:
            raise SelectionError(f"{what} {text!r}: {item.strip()!r} is not a number or a range N-M")
        low, high = int(match[1]), int(match[2] or match[1])
        if low < 1:
            raise SelectionError(f"{what} {text!r}: {item.strip()!r} starts below 1 (numbers start at 1)")
        if high < low:
            raise SelectionError(f"{what} {text!r}: range {item.strip()!r} ends before it starts")
        chosen.extend(range(low, high + 1))
    repeated = sorted(n for n, times in collections.Counter(chosen).items() if times > 1)
    if repeated:
        raise SelectionError(f"{what} {text!r}: {repeated[0]} is selected more than once")
    return tuple(sorted(chosen))


def resolve_selection(chosen: tuple[int, ...], count: int, what: str) -> tuple[int, ...]:
    """The selected numbers checked against ``count`` available; all of them when none is chosen."""
    if not chosen:
        return tuple(range(1, count + 1))
    beyond = [n for n in chosen if n > count]
    if beyond:
        ranges, start = [], beyond[0]
        for i, n in enumerate(beyond):
            if i + 1 == len(beyond) or beyond[i + 1] != n + 1:
                ranges.append(f"{start}-{n}" if n > start else str(n))
                start = beyond[i + 1] if i + 1 < len(beyond) else None
        return_text = ",".join(ranges)
        raise SelectionError(f"{what}: {return_text} {'is' if len(beyond) == 1 else 'are'} selected but there are "
                             f"only {count} (1-{count})")
    return chosen


def period_keys(ns: np.ndarray, chunk_size: str) -> np.ndarray:
    """The period of each UTC timestamp (ns): days, Monday-based weeks or months since 1970."""
    days = ns // DAY_NS
    if chunk_size == "daily":
        return days
    if chunk_size == "weekly":
        return (days + 3) // 7  # 1970-01-01 was a Thursday
    if chunk_size == "monthly":
        return days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    raise ValueError(f"unknown chunk size {chunk_size!r}")


def period_label(key: int, chunk_size: str) -> str:
    """``2024-01-15`` (daily), ``2024-W03`` (ISO week of a Monday-based week) or ``2024-01`` (monthly)."""
    if chunk_size == "daily":
        return str(np.datetime64(int(key), "D"))
    if chunk_size == "weekly":
        year, week, _ = datetime.date.fromisoformat(str(np.datetime64(int(key) * 7 - 3, "D"))).isocalendar()
        return f"{year}-W{week:02d}"
    return str(np.datetime64(int(key), "M"))


def _pieces(tables: Iterable[pa.Table], chunk_size: str, time_column: str) -> Iterator[tuple[int, pa.Table]]:
    """(period, rows) slices of a timestamp-sorted stream of tables."""
    for table in tables:
        if not len(table):
            continue
        keys = period_keys(values(table.column(time_column)), chunk_size)
        if (np.diff(keys) < 0).any():
            raise PipelineError("chunking needs rows sorted by time")
        cuts = np.flatnonzero(np.diff(keys)) + 1
        for start, stop in zip(np.append(0, cuts), np.append(cuts, len(keys)), strict=True):
            yield int(keys[start]), table.slice(start, stop - start)


def write_chunks(layout: SeriesLayout, tables: Iterable[pa.Table], chunk_size: str, row_group_rows: int,
                 compression: str = "none", time_column: str = "timestamp") -> list[dict[str, Any]]:
    """Stream sorted ``tables`` into one Parquet file per period, each renamed into place when complete."""
    records = []
    previous = None
    for index, (key, group) in enumerate(
            itertools.groupby(_pieces(tables, chunk_size, time_column), key=lambda piece: piece[0]), start=1):
        if previous is not None and key <= previous:
            raise PipelineError("chunking needs rows sorted by time")
        previous = key
        period = period_label(key, chunk_size)
        path = layout.chunk(index, period)
        rows, first, last = 0, None, None
        with atomic_path(path) as temp:
            writer = None
            try:
                for _, piece in group:
                    writer = writer or pq.ParquetWriter(temp, piece.schema, compression=compression,
                                                        use_dictionary=False)
                    writer.write_table(piece, row_group_size=row_group_rows)
                    stamps = piece.column(time_column).cast(pa.int64())
                    first = stamps[0].as_py() if first is None else first
                    last, rows = stamps[-1].as_py(), rows + len(piece)
            finally:
                if writer:
                    writer.close()
        records.append({"index": index, "period": period, "file": path.name, "rows": rows,
                        "first_ns": first, "last_ns": last, "first": _iso(first), "last": _iso(last),
                        "size": path.stat().st_size})
    return records


def _iso(ns: int) -> str:
    return str(np.datetime64(ns, "ns")) + "Z"


@functools.lru_cache(maxsize=256)
def _listing(folder: str, mtime_ns: int) -> frozenset[str]:
    return frozenset(os.listdir(folder))


def listing(folder: Path) -> frozenset[str]:
    """Names in ``folder`` (empty when missing): one listing, reused while the folder is unchanged."""
    try:
        return _listing(str(folder), folder.stat().st_mtime_ns)
    except OSError:
        return frozenset()


def write_parquet(path: Path, table: pa.Table) -> None:
    """Write ``table`` as Parquet at a temporary name, then rename it to ``path``."""
    with atomic_path(path) as temp:
        pq.write_table(table, temp)


_NUMPY = {pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64,
          pa.uint64(): np.uint64, pa.float32(): np.float32, pa.float64(): np.float64}


def values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A null-free numeric or timestamp (as int64 ns) column as numpy, read straight from its buffers.

    ``to_numpy`` would import pandas, a second of start-up in every forked Luigi task.
    """
    kind = pa.int64() if pa.types.is_timestamp(column.type) else column.type
    dtype = np.dtype(_NUMPY[kind])
    parts = []
    for chunk in column.chunks if isinstance(column, pa.ChunkedArray) else [column]:
        if chunk.null_count:
            raise ValueError(f"column of {column.type} has {chunk.null_count} nulls")
        parts.append(np.frombuffer(chunk.buffers()[1], dtype=dtype)[chunk.offset:chunk.offset + len(chunk)])
    if not parts:
        return np.zeros(0, dtype)
    return np.concatenate(parts) if len(parts) != 1 else parts[0]


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """The Parquet file at ``path`` (``pq.read_table`` would import pyarrow.dataset and pandas: 1 s a process)."""
    with pq.ParquetFile(path) as source:
        return source.read(columns=columns)


def parquet_columns(path: Path) -> list[str]:
    """The column names of the Parquet file at ``path`` (its footer only)."""
    with pq.ParquetFile(path) as source:
        return source.schema_arrow.names


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` at ``path``, atomically."""
    with atomic_open(path) as handle:
        handle.write(text.encode())


def _row_groups(paths: Iterable[Path], columns: list[str], backwards: bool) -> Iterator[pa.Table]:
    for path in paths:
        source = pq.ParquetFile(path)
        groups = range(source.num_row_groups)
        for group in reversed(groups) if backwards else groups:
            yield source.read_row_group(group, columns=columns)


def scan(paths: list[Path], schema: pa.Schema, enough: Callable[[pa.Table], bool], backwards: bool) -> pa.Table:
    """Rows of ``paths`` read a row group at a time (from the end when ``backwards``) until ``enough``.

    Only the columns of ``schema`` are read; the rows come back in file order (none: an empty table).
    """
    parts: list[pa.Table] = []
    table = schema.empty_table()
    for part in _row_groups(paths, schema.names, backwards):
        parts = [part, *parts] if backwards else [*parts, part]
        table = pa.concat_tables(parts)
        if enough(table):
            break
    return table


def chronological_bounds(first_ns: int, last_ns: int, fractions: dict[str, float]) -> list[int]:
    """Start of val and of test: the time span cut at the train and train+val fractions, down to midnight."""
    span = last_ns - first_ns
    cuts = [first_ns + int(span * fractions["train"]), first_ns + int(span * (fractions["train"] + fractions["val"]))]
    return [cut // DAY_NS * DAY_NS for cut in cuts]


def split_index(ns: np.ndarray, bounds: list[int]) -> np.ndarray:
    """0 train, 1 val, 2 test for each timestamp."""
    return np.searchsorted(np.asarray(bounds, dtype=np.int64), ns, side="right").astype(np.int8)


@dataclass(frozen=True)
class SampleSpec:
    """Which columns of the result tables make a training sample, and when its data starts and ends."""

    features: tuple[str, ...]
    label: str
    time: str
    first: str
    """Time of the first row of the sample's window (null when the window is incomplete)."""
    last: str
    """Time of the row the label comes from (null when there is none)."""


def _assign(table: pa.Table, spec: SampleSpec, bounds: list[int]) -> tuple[np.ndarray, dict[str, int]]:
    """Split of each row (-1 when it is no sample) and why rows were left out."""
    first = table.column(spec.first)
    last = table.column(spec.last)
    missing = (values(first.is_null().cast(pa.int8())) == 1, values(last.is_null().cast(pa.int8())) == 1)
    start = split_index(values(first.cast(pa.int64()).fill_null(0)), bounds)
    end = split_index(values(last.cast(pa.int64()).fill_null(0)), bounds)
    crossing = ~missing[0] & ~missing[1] & (start != end)
    where = np.where(missing[0] | missing[1] | crossing, -1, start).astype(np.int8)
    left_out = {"incomplete_window": int(missing[0].sum()), "no_next_row": int((~missing[0] & missing[1]).sum()),
                "crossing_split": int(crossing.sum())}
    return where, left_out


def write_chronological_split(folder: Path, tables: Callable[[list[str]], Iterator[pa.Table]], spec: SampleSpec,
                              bounds: list[int]) -> dict[str, Any]:
    """Write ``X_{split}.npy``, ``labels_{split}.npz``, ``groups_{split}.npy`` (group = UTC day), streamed.

    A row is a sample of a split only when its whole window and its label row lie in that
    split, so no window crosses a split boundary. Two passes over ``tables(columns)``, which
    reads only those columns: count (the times), then write.
    """
    times = list(dict.fromkeys([spec.first, spec.last, spec.time]))
    counts = np.zeros(3, dtype=np.int64)
    left_out = {"incomplete_window": 0, "no_next_row": 0, "crossing_split": 0}
    days: list[set[int]] = [set(), set(), set()]
    for table in tables(times):
        where, dropped = _assign(table, spec, bounds)
        counts += np.bincount(where[where >= 0], minlength=3)
        left_out = {k: left_out[k] + dropped[k] for k in left_out}
        day = values(table.column(spec.time)) // DAY_NS
        for index in range(3):
            days[index].update(np.unique(day[where == index]).tolist())
    width = len(spec.features)
    with contextlib.ExitStack() as stack:
        def opened(stem: str, suffix: str) -> list:
            return [stack.enter_context(atomic_open(folder / f"{stem}_{split}{suffix}")) for split in SPLITS]

        archives = [stack.enter_context(NpzWriter(handle)) for handle in opened("labels", ".npz")]
        members = [stack.enter_context(a.zip.open(f"{spec.label}.npy", "w", force_zip64=True)) for a in archives]
        xs = [ArrayWriter(h, np.float32, (width,), int(n)) for h, n in zip(opened("X", ".npy"), counts, strict=True)]
        groups = [ArrayWriter(h, np.uint64, (), int(n)) for h, n in zip(opened("groups", ".npy"), counts, strict=True)]
        labels = None
        for table in tables(list(dict.fromkeys([*times, *spec.features, spec.label]))):
            where, _ = _assign(table, spec, bounds)
            x = np.stack([values(table.column(name)) for name in spec.features], axis=1).astype(np.float32)
            label = values(table.column(spec.label))
            labels = labels or [ArrayWriter(m, label.dtype, (), int(n)) for m, n in zip(members, counts, strict=True)]
            day = (values(table.column(spec.time)) // DAY_NS).astype(np.uint64)
            for index in range(3):
                rows = where == index
                xs[index].append(x[rows])
                groups[index].append(day[rows])
                labels[index].append(label[rows])
        labels = labels or [ArrayWriter(m, np.int8, (), 0) for m in members]
        for writer in (*xs, *groups, *labels):
            writer.close()
    names = []
    for stem, suffix in (("X", ".npy"), ("labels", ".npz"), ("groups", ".npy")):
        names += [f"{stem}_{split}{suffix}" for split in SPLITS]
    return {
        "files": names,
        "rows": {"total": int(counts.sum()), **{s: int(counts[i]) for i, s in enumerate(SPLITS)}},
        "groups": {s: len(days[i]) for i, s in enumerate(SPLITS)},
        "left_out": left_out,
        "bounds": {"val_from": _iso(bounds[0]), "test_from": _iso(bounds[1])},
    }


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table of ``rows`` under ``header``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
