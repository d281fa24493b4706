"""The universe-analysis contract of the ticks flow, and the consolidation every plug-in gets.

An analysis turns the candles of one chunk × universe into a table, and the tables of one
universe's chunks into ranked patterns. The flow (``pipeline/flows/ticks.py``) does the I/O:

- ``analyse(candles, rows, lookback, pip) -> pa.Table``. ``candles`` maps column names to
  numpy arrays of the chunk's candles with up to ``before(lookback)`` candles of the earlier
  chunks in front and up to ``after`` candles of the later ones behind: ``start`` (int64 ns),
  ``open, high, low, close, spread_avg`` (float64), ``ticks`` (int32), and the ``next_candle``
  columns (``body_pips``, ``class``, ...). ``rows`` are the indices of the chunk's own candles:
  return rows for those only, so that every candle is analysed once whatever the chunking.
  ``window_index(rows, lookback)`` gives each row's preceding window. The table needs a
  ``start`` timestamp column; rows come back in time order.
- ``consolidate(tables, context) -> Consolidated``: ``tables()`` streams the universe's
  result tables in chunk order. Its ``patterns`` table has ``universe, name, count, score``
  and ``rank`` (1 = best) columns at least; ``facts`` go to ``stats.json``, ``tables`` to
  ``<name>.parquet`` and ``report`` into ``performance_report.md``.

A plug-in named ``package.module:function`` in ``[universes] analysis`` is an
:class:`Analysis`, or a plain ``analyse`` function: it then gets :func:`consolidate_patterns`
(a ``pattern`` column is required) and its optional ``before`` / ``after`` attributes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.engine.series import SampleSpec

Analyse = Callable[[dict[str, np.ndarray], np.ndarray, int, float], pa.Table]


@dataclass(frozen=True)
class UniverseContext:
    """What consolidation knows of its universe."""

    name: str
    interval: int
    lookback: int
    pip: float
    min_count: int


@dataclass(frozen=True)
class Consolidated:
    """One universe's consolidated outputs: ranked patterns, facts, extra tables and a report section."""

    patterns: pa.Table
    facts: Mapping[str, Any] = field(default_factory=dict)
    tables: Mapping[str, pa.Table] = field(default_factory=dict)
    report: str = ""


@dataclass(frozen=True)
class Analysis:
    """A universe analysis: its functions, the context candles it needs and its training-set label."""

    name: str
    analyse: Analyse
    consolidate: Callable[[Callable[[], Iterator[pa.Table]], UniverseContext], Consolidated]
    before: Callable[[int], int] = lambda lookback: lookback
    """Candles of the earlier chunks needed in front of a chunk's own."""
    after: int = 1
    """Candles of the later chunks needed behind a chunk's own."""
    check: Callable[[list[int]], str | None] = lambda lookbacks: None
    """Why the recipe's lookbacks cannot be analysed, or None."""
    sample: Callable[[list[str]], SampleSpec] | None = None
    """The training sample of a result table (from its column names); None: no training set."""
    label_names: tuple[str, ...] = ()
    top_columns: tuple[str, ...] = ("name", "count", "score")
    """Pattern columns of the report's top tables."""


def window_index(rows: np.ndarray, lookback: int) -> np.ndarray:
    """The candle indices of the ``lookback`` candles before each row: shape (rows, lookback)."""
    return rows[:, None] - lookback + np.arange(lookback)[None, :]


def consolidate_patterns(tables: Callable[[], Iterator[pa.Table]], context: UniverseContext) -> Consolidated:
    """Per value of the ``pattern`` column: count, share and the mean of every other numeric column.

    Ranked by count (ties: pattern); patterns seen fewer than ``min_count`` times score 0.
    """
    parts = list(tables())
    if not parts or "pattern" not in parts[0].schema.names:
        raise ValueError("a plug-in analysis without its own consolidation must return a 'pattern' column")
    table = pa.concat_tables(parts)
    numeric = [f.name for f in table.schema if f.name != "pattern"
               and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))]
    grouped = table.group_by("pattern").aggregate([("pattern", "count")] + [(name, "mean") for name in numeric])
    grouped = grouped.rename_columns(["count" if c == "pattern_count" else c for c in grouped.schema.names])
    count = np.asarray(grouped.column("count"))
    score = np.where(count >= context.min_count, count, 0).astype(np.float64)
    grouped = grouped.append_column("share", pa.array(count / max(1, count.sum())))
    grouped = grouped.append_column("score", pa.array(score))
    grouped = grouped.append_column("name", pc.cast(grouped.column("pattern"), pa.string()))
    grouped = grouped.append_column("universe", pa.array([context.name] * len(grouped), pa.string()))
    grouped = grouped.sort_by([("score", "descending"), ("name", "ascending")])
    grouped = grouped.append_column("rank", pa.array(np.arange(1, len(grouped) + 1, dtype=np.int32)))
    return Consolidated(patterns=grouped, facts={"patterns_seen": len(grouped)})


def as_analysis(name: str, target: object) -> Analysis:
    """A plug-in's :class:`Analysis` (a plain function gets the generic consolidation)."""
    if isinstance(target, Analysis):
        return target
    if callable(target):
        before = getattr(target, "before", None)
        return Analysis(name=name, analyse=target, consolidate=consolidate_patterns,
                        before=before if callable(before) else (lambda lookback: lookback),
                        after=int(getattr(target, "after", 1)))
    raise LookupError(f"analysis {name!r} is neither an Analysis nor a function")


def load_plugin(name: str) -> Analysis:
    """The analysis ``package.module:attribute``; LookupError with one line when it cannot be loaded."""
    module_name, sep, attribute = name.partition(":")
    if not sep or not module_name or not attribute:
        raise LookupError(f"analysis {name!r} is neither built in nor written 'package.module:function'")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise LookupError(f"cannot load analysis {name!r}: {exc}") from None
    return as_analysis(name, target)
