"""The ``next_candle`` universe analysis: 27 patterns (candle class × window trend) and the next candle.

The window of candle t is candles t-L+1..t (itself included); its pattern is its class and its
window's trend; the label is the class of candle t+1. The candles themselves (and their
classes) come from the ticks kind (``pipeline/kinds/ticks.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.analyses.base import Analysis, Consolidated, UniverseContext
from pipeline.engine.series import SampleSpec, values
from pipeline.kinds import ticks

TRENDS = ("downtrend", "sideways", "uptrend")
PATTERNS = len(ticks.CLASS_NAMES) * len(TRENDS)
FEATURES = (
    "w_return_pips", "w_range_pips", "w_close_position", "w_body_mean_pips", "w_body_abs_mean_pips",
    "w_body_std_pips", "w_up_share", "w_range_mean_pips", "w_upper_wick_mean_pips",
    "w_lower_wick_mean_pips", "w_spread_mean_pips", "w_log_ticks_mean",
)
"""The lookback-window features of a candle, the columns of the training set's X."""


def rolling(values: np.ndarray, lookback: int, reduce=np.add) -> np.ndarray:
    """``reduce`` over every run of ``lookback`` values, accumulated in window order.

    Each window is folded from its first value to its last, whatever its position, so a
    window's result is bit-identical however much data precedes it (chunk-size independence).
    """
    count = len(values) - lookback + 1
    out = values[:count].astype(np.float64)
    for k in range(1, lookback):
        out = reduce(out, values[k:k + count])
    return out


def window_features(c: dict[str, np.ndarray], lookback: int, pip: float) -> np.ndarray:
    """Features of each candle's window (itself and the lookback-1 before it); NaN rows when too short."""
    n = len(c["start"])
    out = np.full((n, len(FEATURES)), np.nan, dtype=np.float32)
    if n < lookback:
        return out

    def mean(values: np.ndarray) -> np.ndarray:
        return rolling(values.astype(np.float64), lookback) / lookback

    body = c["body_pips"].astype(np.float64)
    body_mean = mean(body)
    squares = np.zeros_like(body_mean)
    for k in range(lookback):
        squares += (body[k:k + len(body_mean)] - body_mean) ** 2
    high, low = rolling(c["high"], lookback, np.maximum), rolling(c["low"], lookback, np.minimum)
    close, open_ = c["close"][lookback - 1:], c["open"][:n - lookback + 1]
    span = high - low
    columns = [
        np.round((close - open_) / pip, 6), np.round(span / pip, 6),
        np.divide(close - low, span, out=np.full(len(span), 0.5), where=span > 0),
        body_mean, mean(np.abs(body)), np.sqrt(squares / lookback),
        mean(body > 0), mean(c["range_pips"]), mean(c["upper_wick_pips"]),
        mean(c["lower_wick_pips"]), mean(c["spread_mean_pips"]), mean(np.log1p(c["ticks"].astype(np.float64))),
    ]
    out[lookback - 1:] = np.stack(columns, axis=1)
    return out


def patterns(c: dict[str, np.ndarray], features: np.ndarray) -> np.ndarray:
    """Pattern id = class * 3 + trend of the window (down/sideways/up by 1 pip); -1 without a window."""
    ret = features[:, FEATURES.index("w_return_pips")]
    trend = np.searchsorted(np.array([-1.0, 1.0]), ret, side="left")
    return np.where(np.isnan(ret), -1, c["class"].astype(np.int16) * len(TRENDS) + trend).astype(np.int16)


def candle_rows(before: dict[str, np.ndarray], own: dict[str, np.ndarray], after: dict[str, np.ndarray],
            lookback: int, pip: float) -> pa.Table:
    """One row per candle of ``own``: the candle, its window features and pattern, and the next candle.

    ``before`` holds the lookback-1 candles preceding ``own`` (fewer at the start of the data),
    ``after`` the candles following it (only the first is used).
    """
    joined = {name: np.concatenate([before[name], own[name]]) for name in own}
    skip = len(before["start"])
    features = window_features(joined, lookback, pip)[skip:]
    window_start = np.full(len(own["start"]), np.iinfo(np.int64).min)
    complete = ~np.isnan(features[:, 0])
    window_start[complete] = joined["start"][np.flatnonzero(complete) + skip - lookback + 1]
    following = {name: np.concatenate([own[name][1:], after[name][:1]]) for name in ("start", "class", "body_pips")}
    has_next = np.arange(len(own["start"])) < len(following["start"])
    pad = len(own["start"]) - len(following["start"])
    following = {name: np.concatenate([v, np.zeros(pad, v.dtype)]) for name, v in following.items()}
    stamp = pa.timestamp("ns", "UTC")
    columns: dict[str, Any] = {name: own[name] for name in own if name != "spread_avg"}
    columns["start"] = pa.array(own["start"]).cast(stamp)
    columns["window_start"] = pa.array(window_start, mask=~complete).cast(stamp)
    columns["pattern"] = patterns(own, features)
    columns.update({name: features[:, i] for i, name in enumerate(FEATURES)})
    columns["next_start"] = pa.array(following["start"], mask=~has_next).cast(stamp)
    columns["next_class"] = np.where(has_next, following["class"], -1).astype(np.int8)
    columns["next_body_pips"] = np.where(has_next, following["body_pips"], np.nan).astype(np.float32)
    return pa.table(columns)


class PatternStats:
    """Counts and exact sums (in milli-pips) of the next candle per pattern, over streamed result tables."""

    def __init__(self):
        self.count = np.zeros(PATTERNS, dtype=np.int64)
        self.up = np.zeros(PATTERNS, dtype=np.int64)
        self.down = np.zeros(PATTERNS, dtype=np.int64)
        self.total = np.zeros(PATTERNS, dtype=np.int64)
        self.squares = np.zeros(PATTERNS, dtype=np.int64)

    def update(self, pattern: np.ndarray, next_class: np.ndarray, next_body_pips: np.ndarray) -> None:
        """Add candles: their pattern (-1: none), the next candle's class (-1: none) and body."""
        usable = (pattern >= 0) & (next_class >= 0)
        pattern, next_class = pattern[usable], next_class[usable]
        milli = np.round(next_body_pips[usable].astype(np.float64) * 1000).astype(np.int64)
        self.count += np.bincount(pattern, minlength=PATTERNS)
        self.up += np.bincount(pattern[next_class > 4], minlength=PATTERNS)
        self.down += np.bincount(pattern[next_class < 4], minlength=PATTERNS)
        np.add.at(self.total, pattern, milli)
        np.add.at(self.squares, pattern, milli * milli)

    def table(self, universe: str, min_count: int) -> pa.Table:
        """Statistics of every pattern seen, ranked by composite score within the universe."""
        seen = np.flatnonzero(self.count)
        n = self.count[seen].astype(np.float64)
        mean = self.total[seen] / n / 1000
        var = np.maximum(self.squares[seen] / n / 1e6 - mean ** 2, 0.0)
        std = np.sqrt(var)
        t_stat = np.divide(mean * np.sqrt(n), std, out=np.zeros_like(mean), where=std > 0)
        up, down = self.up[seen] / n, self.down[seen] / n
        score = np.where(n >= min_count, np.abs(t_stat) * np.abs(up - down), 0.0)
        order = np.lexsort((seen, -score))
        rank = np.empty(len(seen), dtype=np.int32)
        rank[order] = np.arange(1, len(seen) + 1)
        names = [f"{ticks.CLASS_NAMES[p // len(TRENDS)]} in {TRENDS[p % len(TRENDS)]}" for p in seen]
        return pa.table({
            "universe": pa.array([universe] * len(seen), pa.string()),
            "pattern": seen.astype(np.int16), "name": names,
            "count": self.count[seen], "share": n / max(1, int(self.count.sum())),
            "next_up_rate": up, "next_down_rate": down,
            "next_mean_pips": mean, "next_std_pips": std, "t_stat": t_stat,
            "score": score, "rank": rank,
        }).take(order)


SPEC = SampleSpec(features=FEATURES, label="next_class", time="start", first="window_start", last="next_start")


def analyse(candles: dict[str, np.ndarray], rows: np.ndarray, lookback: int, pip: float) -> pa.Table:
    """One row per own candle: its window features, pattern and the next candle (:func:`candle_rows`)."""
    first, last = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, 0)
    parts = [{name: array[a:b] for name, array in candles.items()}
             for a, b in ((max(0, first - (lookback - 1)), first), (first, last), (last, len(candles["start"])))]
    return candle_rows(*parts, lookback, pip)


def consolidate(tables: Callable[[], Iterator[pa.Table]], context: UniverseContext) -> Consolidated:
    """Next-candle statistics per pattern, ranked by composite score."""
    stats, candles = PatternStats(), 0
    for table in tables():
        stats.update(*(values(table.column(name)) for name in ("pattern", "next_class", "next_body_pips")))
        candles += len(table)
    patterns = stats.table(context.name, context.min_count)
    return Consolidated(patterns=patterns, facts={"candles": candles, "patterns_seen": len(patterns)})


ANALYSIS = Analysis(
    name="next_candle", analyse=analyse, consolidate=consolidate, before=lambda lookback: lookback - 1, after=1,
    sample=lambda names: SPEC, label_names=ticks.CLASS_NAMES,
    top_columns=("name", "count", "next_up_rate", "next_down_rate", "next_mean_pips", "score"),
)
