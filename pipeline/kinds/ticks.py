"""Tick data (Exness CSV or Parquet) → clean ticks, OHLC candles, lookback-window features, patterns.

Pure, vectorised functions; the "ticks" flow (``pipeline/tasks/ticks.py``) does the I/O.

- Input: CSV in the Exness layout ``"Exness","Symbol","Timestamp","Bid","Ask"`` (timestamps
  like ``2024-01-15 00:00:00.032Z``) or Parquet with ``timestamp, bid, ask``. Derived:
  ``mid = (bid + ask) / 2`` and ``spread_pips = (ask - bid) / pip_size``.
- Bad ticks are dropped, counted by reason and recorded with file and line: ``unparsable``
  (wrong field count, bad timestamp or price), ``non_positive`` (a price <= 0), ``bid_gt_ask``,
  ``out_of_order`` (older than the last good tick) and ``duplicate`` (same timestamp as it).
- A candle covers ``interval`` minutes of mid prices (intervals divide a day, so no candle
  crosses a daily, weekly or monthly chunk). Its class joins direction and body size:
  0-3 down 30+, 15-30, 5-15, 1-5 pips; 4 flat (body under 1 pip); 5-8 up 1-5 ... 30+ pips.
- The window of candle t is candles t-L+1..t (L = lookback). Its features are sums over
  exactly those L candles (numpy sliding windows), so a result never depends on where a
  chunk starts. Pattern of t = (class of t, trend of its window); label = class of t+1.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.kinds.base import Kind, Setting

CSV_COLUMNS = ("Exness", "Symbol", "Timestamp", "Bid", "Ask")
PARQUET_COLUMNS = ("timestamp", "bid", "ask")
REASONS = ("unparsable", "non_positive", "bid_gt_ask", "out_of_order", "duplicate")
CHUNK_SIZES = ("daily", "weekly", "monthly")
STRATEGIES = ("auto", "chunked", "universe")
MINUTE_NS = 60 * 10**9
DAY_MINUTES = 1440

SIZE_BOUNDS = np.array([1.0, 5.0, 15.0, 30.0])
"""Body-size class edges in pips: class 0 under 1 (flat), 1: 1-5, 2: 5-15, 3: 15-30, 4: 30+."""
SIZE_NAMES = ("<1", "1-5", "5-15", "15-30", "30+")
CLASS_NAMES = tuple([f"down {s}" for s in SIZE_NAMES[:0:-1]] + ["flat <1"] + [f"up {s}" for s in SIZE_NAMES[1:]])
TICK_SCHEMA = pa.schema([("timestamp", pa.timestamp("ns", "UTC")), ("bid", pa.float64()), ("ask", pa.float64()),
                         ("mid", pa.float64()), ("spread_pips", pa.float32())])


@dataclass
class RawBlock:
    """Rows of one input block before cleaning: NaT/NaN where a value did not parse."""

    timestamp: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    line: np.ndarray
    text: list[tuple[int, str]] = field(default_factory=list)
    """Lines with the wrong number of fields: (line, first characters)."""


@dataclass
class CleanBlock:
    """Good ticks of a block, the count of each bad reason and failure records (capped)."""

    ticks: pa.Table
    counts: dict[str, int]
    failures: list[tuple[int, str, str]]


def _floats(strings: pa.Array) -> np.ndarray:
    """Strings → float64, NaN where not a number (fast path: one Arrow cast for the block)."""
    try:
        return pc.cast(strings, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        import pandas as pd
        return pd.to_numeric(pd.Series(strings.to_numpy(zero_copy_only=False)), errors="coerce").to_numpy(float)


def _timestamps(strings: pa.Array) -> np.ndarray:
    """ISO strings (``Z`` or no zone = UTC) → int64 ns, ``iNaT`` where they do not parse."""
    try:
        parsed = pc.cast(strings, pa.timestamp("ns", "UTC"))
    except pa.ArrowInvalid:
        import pandas as pd
        series = pd.to_datetime(pd.Series(strings.to_numpy(zero_copy_only=False)), format="ISO8601",
                                errors="coerce", utc=True)
        return series.to_numpy("datetime64[ns]").view(np.int64)
    return parsed.fill_null(pa.scalar(np.iinfo(np.int64).min, pa.timestamp("ns", "UTC"))) \
        .cast(pa.int64()).to_numpy(zero_copy_only=False)


def read_csv_blocks(path: Path, block_bytes: int) -> Iterator[RawBlock]:
    """Stream an Exness CSV in blocks; lines with the wrong field count are kept as text."""
    import pyarrow.csv as pcsv

    bad: list[tuple[int, str]] = []

    def invalid(row) -> str:
        bad.append((row.number, (row.text or "")[:80]))
        return "skip"

    with open(path, "rb") as handle:
        header = handle.readline().decode("utf-8", "replace").strip().replace('"', "").split(",")
        if [h.strip().lower() for h in header] != [c.lower() for c in CSV_COLUMNS]:
            raise ValueError(f"header {','.join(header)[:80]!r} is not the Exness layout {','.join(CSV_COLUMNS)}")
        handle.seek(0)
        reader = pcsv.open_csv(
            handle,
            read_options=pcsv.ReadOptions(use_threads=False, block_size=block_bytes),
            parse_options=pcsv.ParseOptions(invalid_row_handler=invalid, ignore_empty_lines=False),
            convert_options=pcsv.ConvertOptions(column_types={c: pa.string() for c in header},
                                                include_columns=header, strings_can_be_null=True))
        pending = np.zeros(0, dtype=np.int64)  # skipped lines not yet behind the rows read
        passed = rows_before = 0  # skipped lines behind them, rows read
        for batch in reader:
            pending = np.sort(np.append(pending, [number for number, _ in bad]).astype(np.int64))
            text, bad[:] = list(bad), []
            columns = [batch.column(i) for i in range(5)]
            index = np.arange(rows_before, rows_before + batch.num_rows)
            rows_before += batch.num_rows
            # line of row r: r + 2 (header, 1-based) + the skipped lines before it
            shift = pending - 2 - passed - np.arange(len(pending))
            line = index + 2 + passed + np.searchsorted(shift, index, side="right")
            behind = pending < (line[-1] if len(line) else 0)
            passed, pending = passed + int(behind.sum()), pending[~behind]
            blank = np.ones(batch.num_rows, dtype=bool)
            for column in columns:
                blank &= pc.fill_null(pc.equal(pc.utf8_trim_whitespace(column), ""), True).to_numpy(
                    zero_copy_only=False)
            keep = ~blank
            yield RawBlock(_timestamps(pc.utf8_trim_whitespace(columns[2]).filter(keep)),
                           _floats(columns[3].filter(keep)), _floats(columns[4].filter(keep)), line[keep], text)
        if bad:  # malformed lines of blocks without a single well-formed row
            none = np.zeros(0, dtype=np.int64)
            yield RawBlock(none, none.astype(float), none.astype(float), none, list(bad))


def read_parquet_blocks(path: Path, batch_rows: int) -> Iterator[RawBlock]:
    """Stream a Parquet file with ``timestamp, bid, ask`` (timestamp as time, ns integers or text)."""
    import pyarrow.parquet as pq

    source = pq.ParquetFile(path)
    missing = [c for c in PARQUET_COLUMNS if c not in source.schema_arrow.names]
    if missing:
        raise ValueError(f"Parquet columns {source.schema_arrow.names} lack {missing}")
    start = 1
    for batch in source.iter_batches(batch_size=batch_rows, columns=list(PARQUET_COLUMNS)):
        stamps = batch.column(0)
        if pa.types.is_string(stamps.type) or pa.types.is_large_string(stamps.type):
            ns = _timestamps(stamps)
        else:
            if pa.types.is_timestamp(stamps.type):
                stamps = stamps.cast(pa.timestamp("ns", stamps.type.tz))
            ns = stamps.cast(pa.int64()).fill_null(np.iinfo(np.int64).min).to_numpy(zero_copy_only=False)
        prices = [batch.column(i).cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False) for i in (1, 2)]
        yield RawBlock(ns, *prices, np.arange(start, start + batch.num_rows))
        start += batch.num_rows


def read_blocks(path: Path, block_bytes: int) -> Iterator[RawBlock]:
    """Raw blocks of one tick file, by its suffix (``.parquet`` or CSV)."""
    if path.suffix.lower() in (".parquet", ".pq"):
        return read_parquet_blocks(path, max(1024, block_bytes // 32))
    return read_csv_blocks(path, block_bytes)


class TickCleaner:
    """Drops bad ticks of consecutive blocks, remembering the last good timestamp between them."""

    def __init__(self, pip_size: float, record_limit: int):
        self.pip_size, self.record_limit = pip_size, record_limit
        self.last = np.iinfo(np.int64).min
        self.recorded = dict.fromkeys(REASONS, 0)

    def clean(self, block: RawBlock) -> CleanBlock:
        ts, bid, ask = block.timestamp, block.bid, block.ask
        unparsable = (ts == np.iinfo(np.int64).min) | ~np.isfinite(bid) | ~np.isfinite(ask)
        non_positive = ~unparsable & ((bid <= 0) | (ask <= 0))
        crossed = ~unparsable & ~non_positive & (bid > ask)
        priced = ~(unparsable | non_positive | crossed)
        stamps = np.where(priced, ts, np.iinfo(np.int64).min)
        before = np.maximum.accumulate(np.concatenate([[self.last], stamps]))[:-1]
        out_of_order = priced & (ts < before)
        duplicate = priced & (ts == before)
        good = priced & ~out_of_order & ~duplicate
        if good.any():
            self.last = int(ts[good][-1])
        masks = dict(zip(REASONS, (unparsable, non_positive, crossed, out_of_order, duplicate), strict=True))
        counts = {reason: int(mask.sum()) for reason, mask in masks.items()}
        counts["unparsable"] += len(block.text)
        failures = self._records(block, masks, before)
        g_bid, g_ask = bid[good], ask[good]
        ticks = pa.table([pa.array(ts[good], pa.int64()).cast(TICK_SCHEMA.field("timestamp").type), g_bid, g_ask,
                          (g_bid + g_ask) / 2, ((g_ask - g_bid) / self.pip_size).astype(np.float32)],
                         schema=TICK_SCHEMA)
        return CleanBlock(ticks, counts, failures)

    def _records(self, block: RawBlock, masks: dict[str, np.ndarray], before: np.ndarray) -> list:
        """(line, reason, message) of the first ``record_limit`` bad rows of each reason."""
        records = []
        for number, text in block.text:
            if self.recorded["unparsable"] < self.record_limit:
                self.recorded["unparsable"] += 1
                records.append((number, "unparsable", f"expected {len(CSV_COLUMNS)} fields: {text!r}"))
        for reason, mask in masks.items():
            rows = np.flatnonzero(mask)[:max(0, self.record_limit - self.recorded[reason])]
            self.recorded[reason] += len(rows)
            records += [(int(block.line[i]), reason, _message(reason, block, i, before[i])) for i in rows]
        return sorted(records)


def _message(reason: str, block: RawBlock, i: int, before: int) -> str:
    stamp = str(np.datetime64(int(block.timestamp[i]), "ns")) if reason != "unparsable" else ""
    bid, ask = block.bid[i], block.ask[i]
    return {
        "unparsable": "timestamp or price does not parse (or is not finite)",
        "non_positive": f"non-positive price: bid {bid}, ask {ask}",
        "bid_gt_ask": f"bid {bid} > ask {ask}",
        "out_of_order": f"{stamp} is earlier than the previous tick {np.datetime64(int(before), 'ns')}",
        "duplicate": f"{stamp} repeats the previous tick's timestamp",
    }[reason]


def candles(ts: np.ndarray, mid: np.ndarray, spread: np.ndarray, interval: int, pip: float) -> dict[str, np.ndarray]:
    """OHLC candles of ``interval`` minutes from sorted ticks, with counts, spread, body, range, wicks, class."""
    if not len(ts):
        return {name: np.zeros(0, dtype) for name, dtype in CANDLE_DTYPES.items()}
    bucket = ts // (interval * MINUTE_NS)
    first = np.flatnonzero(np.concatenate([[True], bucket[1:] != bucket[:-1]]))
    last = np.append(first[1:], len(ts)) - 1
    open_, close = mid[first], mid[last]
    high, low = np.maximum.reduceat(mid, first), np.minimum.reduceat(mid, first)
    ticks = (last - first + 1).astype(np.int32)
    body = np.round((close - open_) / pip, 6)
    size = np.searchsorted(SIZE_BOUNDS, np.abs(body), side="right").astype(np.int8)
    direction = np.sign(body).astype(np.int8)
    spread_avg = np.add.reduceat(np.asarray(spread, np.float64), first) / ticks
    return {
        "start": bucket[first] * (interval * MINUTE_NS),
        "open": open_, "high": high, "low": low, "close": close, "ticks": ticks,
        "spread_avg": spread_avg, "spread_mean_pips": spread_avg.astype(np.float32),
        "body_pips": body.astype(np.float32),
        "range_pips": np.round((high - low) / pip, 6).astype(np.float32),
        "upper_wick_pips": np.round((high - np.maximum(open_, close)) / pip, 6).astype(np.float32),
        "lower_wick_pips": np.round((np.minimum(open_, close) - low) / pip, 6).astype(np.float32),
        "direction": direction,
        "size_class": size,
        "class": np.where(size == 0, 4, 4 + direction * size).astype(np.int8),
    }


CANDLE_DTYPES = {"start": np.int64, "open": np.float64, "high": np.float64, "low": np.float64,
                 "close": np.float64, "ticks": np.int32, "spread_avg": np.float64, "spread_mean_pips": np.float32,
                 "body_pips": np.float32,
                 "range_pips": np.float32, "upper_wick_pips": np.float32, "lower_wick_pips": np.float32,
                 "direction": np.int8, "size_class": np.int8, "class": np.int8}


def bucket_count(ts: np.ndarray, interval: int) -> int:
    """How many candles of ``interval`` minutes sorted timestamps fall into."""
    bucket = ts // (interval * MINUTE_NS)
    return int(np.count_nonzero(bucket[1:] != bucket[:-1])) + (1 if len(ts) else 0)


def _divides_day(values: list) -> str | None:
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        return "must be a non-empty list of positive integers"
    bad = [v for v in values if DAY_MINUTES % v]
    return f"has {bad}: every interval must divide a day (1440 minutes)" if bad else None


def _analysis_problem(name: str) -> str | None:
    from pipeline import analyses  # analyses import this module: resolved lazily, at recipe load

    return analyses.problem(name)


def _positive_ints(values: list) -> str | None:
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        return "must be a non-empty list of positive integers"
    return "must not repeat a value" if len(set(values)) != len(values) else None


KIND = Kind(
    name="ticks",
    version="1",
    read=None,
    flow="ticks",
    tables={
        "ticks": {
            "chunk_size": Setting(str, "monthly", CHUNK_SIZES, "temporal chunk of one chunk file"),
            "pip_size": Setting(float, 1e-4, help="price of one pip (1e-4 for EURUSD, 1e-2 for JPY pairs)",
                                check=lambda v: None if v > 0 else "must be positive"),
            "record_limit": Setting(int, 1000, help="bad ticks recorded with line and message, per reason "
                                                   "(all are counted)", check=lambda v: None if v >= 0 else
                                    "must be 0 or more"),
        },
        "universes": {
            "intervals": Setting(list, [1, 5, 15, 30, 60], help="candle intervals in minutes (each divides a day)",
                                 check=lambda v: _divides_day(v) or _positive_ints(v)),
            "lookbacks": Setting(list, [5, 10, 20, 50, 100], help="lookback windows in candles",
                                 check=_positive_ints),
            "analysis": Setting(str, "next_candle", help="universe analysis: 'necrozma', 'next_candle' or a plug-in "
                                "'package.module:function' (docs/ticks.md)", check=_analysis_problem),
            "strategy": Setting(str, "auto", STRATEGIES,
                                "run order: chunk by chunk, universe by universe, or auto by free memory"),
            "min_count": Setting(int, 30, help="patterns seen fewer times get score 0",
                                 check=lambda v: None if v >= 1 else "must be 1 or more"),
        },
    },
)


def universes(settings: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """(name, interval, lookback) of each universe, numbered from 1, intervals outermost."""
    pairs = [(i, lb) for i in settings["intervals"] for lb in settings["lookbacks"]]
    return [(f"u{n:02d}_i{i}m_l{lb}", i, lb) for n, (i, lb) in enumerate(pairs, start=1)]
