"""The ``necrozma`` universe analysis: NECROZMA's movement targets, window features and signatures.

As upstream (dans91364-create/NECROZMA ``analyzer.py``) computes a universe:

- a target is a candle with ``|body| >= 1`` pip (``body = (close - open) / pip``), at a 4-size level
  (Pequeno 1-5, Médio 5-15, Grande 15-30, Muito Grande 30+ pips) and a direction (up if body > 0);
- its window is the ``lookback`` candles *before* it; a candle without that many candles before it,
  or without a candle after it, is no target;
- the window's features: OHLC (always), core (10+ candles), advanced (15+ candles);
- its signature bins ``dfa_alpha, hurst, d1_mean, stat_trend_slope, ohlc_up_ratio, photon_efficiency``
  (those present) into VL < -0.5 <= L < -0.1 <= N < 0.1 <= H < 0.5 <= VH, as ``dfa:VH|hur:N|...``;
- per level × direction: occurrences, signature counts and mean/std/min/max of every feature.

Differences, on purpose: windows continue across chunk edges (results do not depend on the chunk
size); upstream's "fewer than lookback + 10 candles: no result" rule is not applied (it depends on
the whole series, which no chunk task sees); lookbacks over 30 are refused (their entropy, Higuchi,
DFA and multifractal branches are not implemented).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.analyses.base import Analysis, Consolidated, UniverseContext
from pipeline.analyses.features_advanced import extract_advanced_features, extract_ohlc_features
from pipeline.analyses.features_core import extract_core_features
from pipeline.engine.series import SampleSpec, markdown_table

MAX_LOOKBACK = 30
MIN_LOOKBACK = 5
LEVELS = ("Pequeno", "Médio", "Grande", "Muito Grande")
LEVEL_BOUNDS = np.array([5.0, 15.0, 30.0])
DIRECTIONS = ("up", "down")
KEYS = ("dfa_alpha", "hurst", "d1_mean", "stat_trend_slope", "ohlc_up_ratio", "photon_efficiency")
BINS = np.array([-0.5, -0.1, 0.1, 0.5])
BIN_NAMES = np.array(["VL", "L", "N", "H", "VH"], dtype=object)
STATS = ("mean", "std", "min", "max")
TOP = 50
"""Signatures kept per level × direction in the pattern summary (upstream's ``top_patterns_per_level``)."""
BATCH = 2048
"""Windows whose features are computed together (results do not depend on it)."""


def check(lookbacks: list[int]) -> str | None:
    """Why ``lookbacks`` cannot be analysed, or None."""
    bad = [lb for lb in lookbacks if not MIN_LOOKBACK <= lb <= MAX_LOOKBACK]
    if bad:
        return (f"has {bad}: analysis 'necrozma' needs lookbacks of {MIN_LOOKBACK}-{MAX_LOOKBACK} candles "
                "(upstream skips windows under 5; its features of longer windows are not implemented)")
    return None


def window_features(candles: dict[str, np.ndarray], windows: np.ndarray, pip: float) -> dict[str, np.ndarray]:
    """Every feature of each window (rows of candle indices), NaN where upstream's dict lacks it.

    Computed for at most ``BATCH`` windows at a time (every feature is one window's own), which bounds
    the memory of a month of 1-minute windows.
    """
    batches = np.array_split(windows, max(1, -(-len(windows) // BATCH)))
    parts = [_batch_features(candles, batch, pip) for batch in batches]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _batch_features(candles: dict[str, np.ndarray], windows: np.ndarray, pip: float) -> dict[str, np.ndarray]:
    scale = 1.0 / pip
    prices = candles["close"][windows]
    pips = np.diff(prices, axis=1) * scale
    window = {name: candles[name][windows] for name in ("close", "ticks", "spread_avg")}
    window["body_pips"] = (candles["close"] - candles["open"])[windows] * scale
    window["range_pips"] = (candles["high"] - candles["low"])[windows] * scale
    high, low, open_, close = (candles[name][windows] for name in ("high", "low", "open", "close"))
    window["upper_wick"] = high - np.maximum(open_, close)
    window["lower_wick"] = np.minimum(open_, close) - low
    return {**extract_core_features(prices), **extract_advanced_features(prices, pips),
            **extract_ohlc_features(window, scale)}


def signatures(features: dict[str, np.ndarray], count: int) -> np.ndarray:
    """The signature of each window (NaN bins as VH: every comparison with NaN is false, as upstream)."""
    parts = []
    for key in KEYS:
        if key in features:
            values = features[key]
            index = np.where(np.isnan(values), 4, np.searchsorted(BINS, values, side="right"))
            parts.append(f"{key[:3]}:" + BIN_NAMES[index])
    if not parts:
        return np.full(count, "UNKNOWN", dtype=object)
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + "|" + part
    return joined


def analyse(candles: dict[str, np.ndarray], rows: np.ndarray, lookback: int, pip: float) -> pa.Table:
    """One row per target among ``rows``: time, level, direction, movement, window start, signature, features."""
    body = (candles["close"] - candles["open"]) * (1.0 / pip)
    total = len(candles["start"])
    rows = rows[(rows >= lookback) & (rows < total - 1)]
    rows = rows[np.abs(body[rows]) >= 1]
    movement = body[rows]
    windows = rows[:, None] - lookback + np.arange(lookback)[None, :]
    features = window_features(candles, windows, pip) if len(rows) else _empty_features(lookback)
    stamp = pa.timestamp("ns", "UTC")
    columns: dict[str, Any] = {
        "start": pa.array(candles["start"][rows]).cast(stamp),
        "window_start": pa.array(candles["start"][rows - lookback]).cast(stamp),
        "level": np.searchsorted(LEVEL_BOUNDS, np.abs(movement), side="right").astype(np.int8),
        "direction": np.where(movement > 0, 0, 1).astype(np.int8),
        "movement_pips": movement,
        "signature": pa.array(signatures(features, len(rows)), pa.string()),
    }
    columns["target"] = (columns["level"] * 2 + columns["direction"]).astype(np.int8)
    columns.update(features)
    return pa.table(columns)


def _empty_features(lookback: int) -> dict[str, np.ndarray]:
    """The feature columns of ``lookback`` with no rows (names from a dummy window)."""
    dummy = {name: np.linspace(1.1, 1.2, lookback) for name in ("open", "high", "low", "close", "spread_avg")}
    dummy.update(start=np.arange(lookback), ticks=np.ones(lookback, np.int32))
    dummy["high"] = dummy["high"] + 0.001
    names = window_features(dummy, np.arange(lookback)[None, :], 1e-4)
    return {name: np.zeros(0) for name in names}


def feature_names(table: pa.Table) -> list[str]:
    return table.schema.names[table.schema.get_field_index("target") + 1:]


def group_stats(table: pa.Table) -> dict[tuple[int, int], dict[str, Any]]:
    """Per (level, direction) with targets: occurrences, features extracted and feature statistics.

    The rows are ordered by target once, stably (a group keeps its time order): each feature
    column is converted once and each group's values are one slice of it.
    """
    target = np.asarray(table.column("target"))
    order = np.argsort(target, kind="stable")
    codes, starts, counts = np.unique(target[order], return_index=True, return_counts=True)
    stats: dict[int, dict[str, float]] = {int(code): {} for code in codes}
    for name in feature_names(table):
        column = np.asarray(table.column(name))[order]
        for code, start, count in zip(codes, starts, counts, strict=True):
            values = column[start:start + count]
            values = values[~np.isnan(values)]
            if len(values):
                stats[int(code)].update({f"{name}_mean": float(np.mean(values)), f"{name}_std": float(np.std(values)),
                                         f"{name}_min": float(np.min(values)), f"{name}_max": float(np.max(values))})
    return {(int(code) // 2, int(code) % 2): {"total_occurrences": int(count), "feature_stats": stats[int(code)]}
            for code, count in zip(codes, counts, strict=True)}


def signature_table(table: pa.Table, universe: str) -> pa.Table:
    """Per level × direction × signature: count, share, movement and key-feature means; ranked by count."""
    target = np.asarray(table.column("target"))
    movement = np.asarray(table.column("movement_pips"))
    keys = [key for key in KEYS if key in table.schema.names]
    means = {key: np.asarray(table.column(key)) for key in keys}
    names, signature = np.unique(np.asarray(table.column("signature").to_pylist(), dtype=object), return_inverse=True)
    pair = target.astype(np.int64) * len(names) + signature  # in (target, signature) order, as their sort
    pairs = np.unique(pair)
    totals = np.bincount(target, minlength=8)
    rows: dict[str, list] = {name: [] for name in ("level", "direction", "signature", "count", "share",
                                                   "movement_mean_pips", "movement_std_pips",
                                                   *[f"{k}_mean" for k in keys])}
    for value in pairs:
        code, sig, chosen = int(value) // len(names), str(names[value % len(names)]), pair == value
        rows["level"].append(LEVELS[code // 2])
        rows["direction"].append(DIRECTIONS[code % 2])
        rows["signature"].append(sig)
        rows["count"].append(int(chosen.sum()))
        rows["share"].append(chosen.sum() / totals[code])
        rows["movement_mean_pips"].append(float(np.mean(movement[chosen])))
        rows["movement_std_pips"].append(float(np.std(movement[chosen])))
        for key in keys:
            rows[f"{key}_mean"].append(float(np.mean(means[key][chosen])))
    result = pa.table({"universe": pa.array([universe] * len(pairs), pa.string()),
                       "name": [f"{lv} {d} {s}" for lv, d, s in zip(rows["level"], rows["direction"],
                                                                      rows["signature"], strict=True)],
                       **{k: pa.array(v, pa.int64() if k == "count" else None) for k, v in rows.items()}})
    result = result.append_column("score", pa.array(np.asarray(rows["count"], dtype=np.float64)))
    result = result.sort_by([("score", "descending"), ("level", "ascending"), ("direction", "ascending"),
                             ("signature", "ascending")])
    return result.append_column("rank", pa.array(np.arange(1, len(result) + 1, dtype=np.int32)))


def ranking(groups: dict[tuple[int, int], dict[str, Any]], patterns: pa.Table) -> dict[str, Any]:
    """Upstream's universe score: total + 10 × signatures seen 3+ times + 50 × (1 - |dfa_mean - 0.6|).

    ``dfa_mean``, as upstream's loop finds it: its ``break`` leaves only the direction loop, so the
    last level with a ``dfa_alpha_mean`` wins (its first direction); 0.5 when none has one.
    """
    dfa_mean = 0.5
    for level in range(len(LEVELS)):
        for direction in range(len(DIRECTIONS)):
            stats = groups.get((level, direction), {}).get("feature_stats", {})
            if "dfa_alpha_mean" in stats:
                dfa_mean = stats["dfa_alpha_mean"]
                break
    total = sum(g["total_occurrences"] for g in groups.values())
    high = int((np.asarray(patterns.column("count")) >= 3).sum()) if len(patterns) else 0
    return {"total_patterns": total, "high_conf_patterns": high, "dfa_mean": dfa_mean,
            "score": total + high * 10.0 + (1 - abs(dfa_mean - 0.6)) * 50}


def consolidate(tables: Callable[[], Iterator[pa.Table]], context: UniverseContext) -> Consolidated:
    """Level × direction statistics, ranked signatures, feature statistics and the universe's score."""
    parts = list(tables())
    table = pa.concat_tables(parts) if parts else analyse(_no_candles(), np.zeros(0, np.int64), context.lookback,
                                                          context.pip)
    groups = group_stats(table)
    patterns = signature_table(table, context.name)
    stat_rows = [(LEVELS[lv], DIRECTIONS[d], stat, value) for (lv, d), g in sorted(groups.items())
                 for stat, value in g["feature_stats"].items()]
    feature_stats = pa.table({name: [row[i] for row in stat_rows]
                              for i, name in enumerate(("level", "direction", "stat", "value"))},
                             schema=pa.schema([("level", pa.string()), ("direction", pa.string()),
                                               ("stat", pa.string()), ("value", pa.float64())]))
    by_group: dict[str, list[dict[str, Any]]] = {}
    for row in patterns.to_pylist():
        by_group.setdefault(f"{row['level']}|{row['direction']}", []).append(row)
    levels = {}
    for lv, level in enumerate(LEVELS):
        for d, direction in enumerate(DIRECTIONS):
            chosen = by_group.get(f"{level}|{direction}", [])
            levels[f"{level}|{direction}"] = {
                "total_occurrences": groups.get((lv, d), {}).get("total_occurrences", 0),
                "unique_patterns": len(chosen),
                "top_patterns": [{key: r[key] for key in ("signature", "count", "share", "movement_mean_pips")}
                                 for r in chosen[:TOP]]}
    facts = {"targets": len(table), "features": len(feature_names(table)), "levels": levels,
             "ranking": ranking(groups, patterns)}
    return Consolidated(patterns=patterns, facts=facts, tables={"feature_stats": feature_stats},
                        report=_report(facts, patterns))


def rankings(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Universes by upstream's score, best first (ties: name), from their ``stats.json``."""
    rows = [{"name": s["universe"], "interval": s["interval_minutes"], "lookback": s["lookback"], **s["ranking"]}
            for s in summaries]
    return sorted(rows, key=lambda row: (-row["score"], row["name"]))


def pattern_summary(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Per level and direction over all universes: occurrences, signatures, and the top signatures.

    Upstream leaves ``top_patterns`` and ``feature_stats`` empty; here ``top_patterns`` holds the
    most frequent signatures (with their universe) and the feature statistics stay per universe
    (``<universe>/feature_stats.parquet``: feature sets differ between lookbacks).
    """
    out: dict[str, Any] = {}
    for level in LEVELS:
        out[level] = {}
        for direction in DIRECTIONS:
            key = f"{level}|{direction}"
            parts = [(s["universe"], s["levels"][key]) for s in summaries]
            top = [{"universe": name, **row} for name, part in parts for row in part["top_patterns"]]
            top.sort(key=lambda row: (-row["count"], row["universe"], row["signature"]))
            out[level][direction] = {"total_occurrences": sum(p["total_occurrences"] for _, p in parts),
                                     "unique_patterns": sum(p["unique_patterns"] for _, p in parts),
                                     "top_patterns": top[:TOP]}
    return out


def _no_candles() -> dict[str, np.ndarray]:
    return {name: np.zeros(0) for name in ("start", "open", "high", "low", "close", "spread_avg", "ticks")}


def _report(facts: dict[str, Any], patterns: pa.Table) -> str:
    rank = facts["ranking"]
    rows = [[key, value["total_occurrences"], value["unique_patterns"]] for key, value in facts["levels"].items()]
    top = patterns.slice(0, 10).to_pylist()
    columns = ["level", "direction", "signature", "count", "share", "movement_mean_pips"]
    return (markdown_table(["targets", "features per window", "signatures seen 3+ times", "score"],
                           [[facts["targets"], facts["features"], rank["high_conf_patterns"],
                             round(rank["score"], 3)]])
            + "\n## Targets per level and direction\n\n"
            + markdown_table(["level|direction", "targets", "signatures"], rows)
            + "\n## Top signatures\n\n"
            + markdown_table(columns, [[_fmt(r[c]) for c in columns] for r in top]))


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


ANALYSIS = Analysis(
    name="necrozma", analyse=analyse, consolidate=consolidate, before=lambda lookback: lookback, after=1,
    check=check, sample=lambda names: SampleSpec(features=tuple(names[names.index("target") + 1:]), label="target",
                                                 time="start", first="window_start", last="start"),
    label_names=tuple(f"{lv} {d}" for lv in LEVELS for d in DIRECTIONS),
    top_columns=("level", "direction", "signature", "count", "share", "movement_mean_pips"),
)
