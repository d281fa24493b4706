"""The ticks flow's consolidation: each universe over the selected chunks, then all universes together.

A universe's results (one table per chunk, ``pipeline/flows/ticks.py``) become its patterns,
the analysis's extra tables, a chronological training set, stats and a report; then every
universe's patterns are ranked globally with the overall report and stats. Each writes its
stage record last and verifies what it reads (a damaged input is rebuilt once).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.analyses import necrozma
from pipeline.analyses.base import UniverseContext
from pipeline.engine.failures import InputError
from pipeline.engine.layout import SPLITS
from pipeline.engine.records import current_record, damaged, is_complete, write_record
from pipeline.engine.series import (
    chronological_bounds,
    parquet_columns,
    read_parquet,
    write_chronological_split,
    write_parquet,
    write_text,
)
from pipeline.engine.storage import read_json, remove_stale_temps, write_json
from pipeline.flows.ticks import TicksRun, peak_rss_mb, verified_results
from pipeline.flows.ticks_report import overall_report, universe_report


def _results(run: TicksRun, name: str, chunks: tuple[int, ...]) -> Callable[..., Iterator[pa.Table]]:
    """``tables(columns=None)``: the result tables of ``chunks`` in order, with only ``columns`` when given."""
    return lambda columns=None: (read_parquet(run.layout.result(name, index), columns) for index in chunks)


def _bounds(run: TicksRun, metadata: dict[str, Any], chunks: tuple[int, ...]) -> list[int]:
    selected = [metadata["chunks"][index - 1] for index in chunks]
    return chronological_bounds(selected[0]["first_ns"], selected[-1]["last_ns"], run.recipe.split)


def consolidate_universe(run: TicksRun, metadata: dict[str, Any], universe: int, chunks: tuple[int, ...],
                         universes: tuple[int, ...] | None = None,
                         rechunk: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Patterns, extra tables, training set, stats and report of one universe over ``chunks``; record last."""
    started = time.time()
    universes = universes or tuple(range(1, len(run.universes) + 1))
    key = run.final_key(universes, chunks, len(metadata["chunks"]))
    rechunk = rechunk or (lambda: metadata)
    verified_results(run, metadata, universe, chunks, rechunk)
    name, interval, lookback = run.universe(universe)
    folder = run.final_folder(key) / name
    remove_stale_temps(folder)
    tables = _results(run, name, chunks)
    context = UniverseContext(name, interval, lookback, run.settings["pip_size"],
                              run.recipe.tables["universes"]["min_count"])
    consolidated = run.analysis.consolidate(tables, context)
    write_parquet(run.layout.patterns(folder), consolidated.patterns)
    extra = []
    for table_name, table in consolidated.tables.items():
        write_parquet(folder / f"{table_name}.parquet", table)
        extra.append(f"{table_name}.parquet")
    spec = None
    if run.analysis.sample and chunks:
        spec = run.analysis.sample(parquet_columns(run.layout.result(name, chunks[0])))
    split = write_chronological_split(folder, tables, spec, _bounds(run, metadata, chunks)) if spec else None
    timings = [read_json(run.layout.result_timing(name, index)) or {} for index in chunks]
    summary = {
        "dataset": run.recipe.name, "kind": run.recipe.kind.name, "analysis": run.analysis.name, "universe": name,
        "interval_minutes": interval, "lookback": lookback, "chunks": list(chunks),
        "ticks": sum(metadata["chunks"][i - 1]["rows"] for i in chunks),
        "result_rows": sum(read_json(run.layout.root / "records" / f"{run.result_stage(universe, i)}.json")
                           ["facts"]["rows"] for i in chunks),
        **dict(consolidated.facts),
        "input": {"files": metadata["files"], "ticks": metadata["ticks"],
                  "failures_by_reason": metadata["failures"]["by_reason"], "failure_records": "chunks/metadata.json"},
        "patterns_seen": len(consolidated.patterns),
        "stages": {"analysis": _stage(timings),
                   "consolidation": {"seconds": round(time.time() - started, 3), "peak_rss_mb": peak_rss_mb()}},
    }
    if split:
        summary.update(rows=split["rows"], groups=split["groups"], left_out=split["left_out"],
                       split={"by": "time", **split["bounds"]}, features=list(spec.features),
                       labels={"label": list(run.analysis.label_names)})
    write_json(folder / "stats.json", summary)
    write_text(run.layout.report(folder), universe_report(run, summary, consolidated))
    files = [*(split["files"] if split else []), "stats.json", run.layout.patterns(folder).name,
             run.layout.report(folder).name, *extra]
    write_record(run.layout.root, run.final_stage(key, universe), run.final_fingerprint(universe, universes, chunks),
                 [folder / f for f in files], {"rows": summary.get("rows", {}), "patterns": len(consolidated.patterns)})
    return summary


def _stage(timings: list[dict[str, Any]]) -> dict[str, Any]:
    """Tasks, summed seconds, wall span and peak memory of one stage's task timings."""
    timings = [t for t in timings if t]
    if not timings:
        return {"tasks": 0, "task_seconds": 0.0, "wall_seconds": 0.0, "peak_rss_mb": 0.0}
    return {"tasks": len(timings), "task_seconds": round(sum(t["seconds"] for t in timings), 3),
            "wall_seconds": round(max(t["started"] + t["seconds"] for t in timings)
                                  - min(t["started"] for t in timings), 3),
            "peak_rss_mb": max(t["peak_rss_mb"] for t in timings)}


def final_complete(run: TicksRun, universe: int | None, universes: tuple[int, ...], chunks: tuple[int, ...],
                   chunk_count: int) -> bool:
    """The record of the consolidation of ``universe`` (None: overall) over ``chunks`` is current."""
    key = run.final_key(universes, chunks, chunk_count)
    return is_complete(run.layout.root, run.final_stage(key, universe),
                       run.final_fingerprint(universe, universes, chunks))


def _verified_universe(run: TicksRun, metadata: dict[str, Any], universe: int, universes: tuple[int, ...],
                       chunks: tuple[int, ...], rechunk: Callable[[], dict[str, Any]]) -> None:
    """Re-consolidate (once) a universe whose consolidated files are missing, stale or damaged."""
    root, key = run.layout.root, run.final_key(universes, chunks, len(metadata["chunks"]))
    stage = run.final_stage(key, universe)
    record = current_record(root, stage, run.final_fingerprint(universe, universes, chunks))
    if record and not damaged(root, record):
        return
    consolidate_universe(run, metadata, universe, chunks, universes, rechunk)
    record = current_record(root, stage, run.final_fingerprint(universe, universes, chunks))
    if not record or damaged(root, record):
        raise InputError(f"{root / stage}: still damaged after consolidating it again")


def consolidate_all(run: TicksRun, metadata: dict[str, Any], universes: tuple[int, ...],
                    chunks: tuple[int, ...], started: float,
                    rechunk: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Every selected universe's patterns ranked globally, the overall report and stats; record last."""
    key = run.final_key(universes, chunks, len(metadata["chunks"]))
    folder = run.final_folder(key)
    rechunk = rechunk or (lambda: metadata)
    for universe in universes:
        _verified_universe(run, metadata, universe, universes, chunks, rechunk)
    names = [run.universe(u)[0] for u in universes]
    summaries = [read_json(folder / name / "stats.json") for name in names]
    tables = [read_parquet(run.layout.patterns(folder / name)) for name in names]
    ranked = rank_globally(tables)
    write_parquet(run.layout.patterns(folder), ranked)
    timings = [read_json(run.layout.result_timing(name, index)) or {} for name in names for index in chunks]
    consolidation = [s["stages"]["consolidation"] for s in summaries]
    stages = {
        "chunking": {"tasks": 1, "seconds": metadata["seconds"], "peak_rss_mb": metadata["peak_rss_mb"]},
        "analysis": _stage(timings),
        "consolidation": {"tasks": len(consolidation) + 1,
                          "task_seconds": round(sum(c["seconds"] for c in consolidation) + time.time() - started, 3),
                          "peak_rss_mb": max([c["peak_rss_mb"] for c in consolidation] + [peak_rss_mb()])},
    }
    files = [run.layout.patterns(folder), run.layout.report(folder), folder / "stats.json"]
    if run.analysis.name == "necrozma":
        write_json(folder / "rankings.json", necrozma.rankings(summaries))
        write_json(folder / "pattern_summary.json", necrozma.pattern_summary(summaries))
        files += [folder / "rankings.json", folder / "pattern_summary.json"]
    write_json(folder / "stats.json", common_stats(run, metadata, summaries, names, chunks, stages))
    write_text(run.layout.report(folder), overall_report(run, metadata, summaries, ranked, chunks, stages))
    write_record(run.layout.root, run.final_stage(key), run.final_fingerprint(None, universes, chunks), files,
                 {"universes": names, "chunks": list(chunks), "stages": stages})
    return stages


def rank_globally(tables: list[pa.Table]) -> pa.Table:
    """All universes' pattern tables in one, ordered and ranked by score (ties: universe, name)."""
    tables = [t for t in tables if len(t)]
    if not tables:
        return pa.table({"universe": pa.array([], pa.string()), "name": pa.array([], pa.string()),
                         "score": pa.array([], pa.float64()), "global_rank": pa.array([], pa.int32())})
    table = pa.concat_tables(tables, promote_options="default").sort_by(
        [("score", "descending"), ("universe", "ascending"), ("name", "ascending")])
    return table.append_column("global_rank", pa.array(np.arange(1, len(table) + 1, dtype=np.int32)))


def common_stats(run: TicksRun, metadata: dict[str, Any], summaries: list[dict], names: list[str],
                 chunks: tuple[int, ...], stages: dict[str, Any]) -> dict[str, Any]:
    """``final/stats.json`` in the engine's common shape: files, records (ticks), rows, failures."""
    tick_rows, files = metadata["ticks"], metadata["files"]
    rows = {split: sum((s.get("rows") or {}).get(split, 0) for s in summaries) for s in ("total", *SPLITS)
            for split in (s,)}
    return {
        "dataset": run.recipe.name, "kind": run.recipe.kind.name, "analysis": run.analysis.name,
        "files": {"discovered": files["discovered"], "processed": files["discovered"] - files["failed"],
                  "failed": files["failed"]},
        "records": {"processed": tick_rows["kept"], "failed": tick_rows["bad"]},
        "rows": rows, "universes": names, "chunks": list(chunks),
        "failures": {"by_reason": metadata["failures"]["by_reason"], "records": metadata["failures"]["records"]},
        "stages": stages,
    }
