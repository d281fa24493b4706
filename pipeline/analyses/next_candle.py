"""The ``next_candle`` universe analysis: 27 patterns (candle class × window trend) and the next candle.

The window of candle t is candles t-L+1..t (itself included); its pattern is its class and its
window's trend; the label is the class of candle t+1. Formulas live in ``pipeline/kinds/ticks.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa

from pipeline.analyses.base import Analysis, Consolidated, UniverseContext
from pipeline.engine.series import SampleSpec, values
from pipeline.kinds import ticks

SPEC = SampleSpec(features=ticks.FEATURES, label="next_class", time="start", first="window_start", last="next_start")


def analyse(candles: dict[str, np.ndarray], rows: np.ndarray, lookback: int, pip: float) -> pa.Table:
    """One row per own candle: its window features, pattern and the next candle (``ticks.analyse``)."""
    first, last = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, 0)
    parts = [{name: array[a:b] for name, array in candles.items()}
             for a, b in ((max(0, first - (lookback - 1)), first), (first, last), (last, len(candles["start"])))]
    return ticks.analyse(*parts, lookback, pip)


def consolidate(tables: Callable[[], Iterator[pa.Table]], context: UniverseContext) -> Consolidated:
    """Next-candle statistics per pattern, ranked by composite score."""
    stats, candles = ticks.PatternStats(), 0
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
