"""The "ticks" flow's plain functions: chunk the input, analyse a chunk × universe, consolidate.

They join the time-series engine (``pipeline.engine.series``: layout, chunk files, scans,
chronological split) to the pure functions of the ticks kind, and know nothing of Luigi.
``pipeline/tasks/ticks.py`` wires them into tasks.
"""

from __future__ import annotations

import collections
import functools
import resource
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.engine.batches import InputError, describe, failure
from pipeline.engine.discovery import InputFile, discover
from pipeline.engine.series import (
    SampleSpec,
    SelectionError,
    SeriesLayout,
    chronological_bounds,
    listing,
    markdown_table,
    read_parquet,
    scan,
    values,
    write_chronological_split,
    write_chunks,
    write_parquet,
    write_text,
)
from pipeline.engine.storage import digest, read_json, remove_stale_temps, write_json
from pipeline.kinds import ticks
from pipeline.recipe import Recipe, RecipeError

CONTEXT_COLUMNS = ["timestamp", "mid", "spread_pips"]
SPEC = SampleSpec(features=ticks.FEATURES, label="next_class", time="start", first="window_start", last="next_start")


@dataclass(frozen=True, eq=False)
class TicksRun:
    """What a run derives from the recipe and the input tree: layout, inputs, universes, fingerprints."""

    recipe: Recipe
    layout: SeriesLayout
    inputs: tuple[InputFile, ...]
    chunk_fingerprint: str
    universes: tuple[tuple[str, int, int], ...]

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.recipe.tables["ticks"])

    @property
    def input_bytes(self) -> int:
        return sum(max(0, f.size) for f in self.inputs)

    def universe(self, number: int) -> tuple[str, int, int]:
        """(name, interval, lookback) of universe ``number`` (1-based)."""
        if not 1 <= number <= len(self.universes):
            raise SelectionError(f"universe {number} does not exist: the recipe defines 1-{len(self.universes)}")
        return self.universes[number - 1]

    def final_fingerprint(self, key: str, chunks: tuple[int, ...]) -> str:
        """What the consolidated outputs of ``key`` (a universe, or the overall key) over ``chunks`` depend on."""
        table = self.recipe.tables["universes"]
        return digest([self.chunk_fingerprint, key, list(chunks), dict(self.recipe.split), table["min_count"],
                       table["intervals"], table["lookbacks"]])


def make_run(recipe: Recipe) -> TicksRun:
    """The run of ``recipe``: one walk of its input folder."""
    if recipe.split["normalize"]:
        raise RecipeError(f"{recipe.path}: [split] normalize = true is not supported by kind 'ticks' "
                          "(its features are already pips, shares and ratios)")
    inputs = tuple(discover(recipe.input_dir, recipe.pattern))
    kind = recipe.kind
    fingerprint = digest([kind.name, kind.version, dict(recipe.tables["ticks"]), recipe.on_error,
                          [(f.relative, f.size, f.mtime_ns) for f in inputs]])
    universes = tuple(ticks.universes(recipe.tables["universes"]))
    return TicksRun(recipe, SeriesLayout(recipe.output_dir), inputs, fingerprint, universes)


@functools.lru_cache(maxsize=8)
def run_for(recipe: Recipe) -> TicksRun:
    """The run of ``recipe``, made once per process (Luigi's workers inherit it)."""
    return make_run(recipe)


def forget_runs() -> None:
    """Drop cached runs so the next call re-reads the input tree (for long-lived processes)."""
    run_for.cache_clear()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class _Accounting:
    """Counts and failure records of the ticks read so far, stopping at the first under ``on_error = "fail"``."""

    def __init__(self, on_error: str):
        self.on_error = on_error
        self.counts = dict.fromkeys(ticks.REASONS, 0)
        self.rows = {"read": 0, "kept": 0}
        self.files = {"discovered": 0, "failed": 0}
        self.failures: list[dict[str, Any]] = []

    def add(self, file: str, clean: ticks.CleanBlock) -> None:
        self.rows["kept"] += len(clean.ticks)
        self.rows["read"] += len(clean.ticks) + sum(clean.counts.values())
        for reason, count in clean.counts.items():
            self.counts[reason] += count
        self.failures += [failure(file, line, reason, message) for line, reason, message in clean.failures]
        self._stop()

    def fail_file(self, file: str, exc: Exception) -> None:
        self.files["failed"] += 1
        self.failures.append(failure(file, None, type(exc).__name__, str(exc) or type(exc).__name__))
        self._stop()

    def _stop(self) -> None:
        if self.failures and self.on_error == "fail":
            raise InputError(describe(self.failures[0]))

    def summary(self) -> dict[str, Any]:
        by_reason = collections.Counter(f["error"] for f in self.failures if f["line"] is None)
        by_reason.update({reason: count for reason, count in self.counts.items() if count})
        return {"files": self.files, "ticks": {**self.rows, "bad": sum(self.counts.values()), **self.counts},
                "failures": {"by_reason": dict(sorted(by_reason.items())), "records": self.failures}}


def chunk_input(run: TicksRun, block_bytes: int, row_group_rows: int, compression: str = "none",
                progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Stream every input file, drop and count bad ticks, write the chunk files and then their metadata.

    Chunks and results of an earlier run are removed first: results are derived from chunks.
    """
    started, layout, settings = time.time(), run.layout, run.settings
    for folder in (layout.chunks, layout.results):
        shutil.rmtree(folder, ignore_errors=True)
    cleaner = ticks.TickCleaner(settings["pip_size"], settings["record_limit"])
    accounting = _Accounting(run.recipe.on_error)

    def tables() -> Iterator[pa.Table]:
        for done, file in enumerate(run.inputs, start=1):
            accounting.files["discovered"] += 1
            try:
                for block in ticks.read_blocks(run.recipe.input_dir / file.relative, block_bytes):
                    clean = cleaner.clean(block)
                    accounting.add(file.relative, clean)
                    yield clean.ticks
            except (OSError, ValueError, pa.ArrowException) as exc:
                accounting.fail_file(file.relative, exc)
            if progress:
                progress(done, len(run.inputs))

    chunks = write_chunks(layout, tables(), settings["chunk_size"], row_group_rows, compression)
    if not chunks:
        summary = accounting.summary()
        raise InputError(f"{run.recipe.input_dir}: no good ticks in the {len(run.inputs)} files matching "
                         f"{run.recipe.pattern!r} ({summary['ticks']['bad']} bad ticks, "
                         f"{summary['files']['failed']} unreadable files)")
    metadata = {"fingerprint": run.chunk_fingerprint, "chunk_size": settings["chunk_size"], "chunks": chunks,
                **accounting.summary(), "seconds": round(time.time() - started, 3), "peak_rss_mb": peak_rss_mb()}
    write_json(layout.chunk_metadata, metadata)
    return metadata


def chunks_complete(run: TicksRun) -> bool:
    """The chunk metadata matches the run and every chunk file it lists is present with its size."""
    metadata = read_json(run.layout.chunk_metadata)
    if not metadata or metadata.get("fingerprint") != run.chunk_fingerprint:
        return False
    names = listing(run.layout.chunks)
    try:
        return all(c["file"] in names and (run.layout.chunks / c["file"]).stat().st_size == c["size"]
                   for c in metadata["chunks"])
    except OSError:
        return False


def chunk_metadata(run: TicksRun) -> dict[str, Any]:
    """The metadata written by :func:`chunk_input` (which must have run)."""
    metadata = read_json(run.layout.chunk_metadata)
    if not metadata or metadata.get("fingerprint") != run.chunk_fingerprint:
        raise InputError(f"{run.layout.chunk_metadata} is missing or stale: chunk the input first (ChunkTicks)")
    return metadata


def _candles(table: pa.Table, interval: int, pip: float) -> dict[str, np.ndarray]:
    ts, mid, spread = (values(table.column(name)) for name in CONTEXT_COLUMNS)
    return ticks.candles(ts, mid, spread, interval, pip)


def analyse_chunk(run: TicksRun, metadata: dict[str, Any], index: int, universe: int) -> pa.Table:
    """Candles of chunk ``index`` for one universe with window features, reading neighbours' edges only."""
    _, interval, lookback = run.universe(universe)
    pip, layout = run.settings["pip_size"], run.layout
    paths = [layout.chunks / chunk["file"] for chunk in metadata["chunks"]]
    own = read_parquet(paths[index - 1], columns=CONTEXT_COLUMNS)
    need = lookback - 1

    def count(table: pa.Table) -> int:
        return ticks.bucket_count(values(table.column("timestamp")), interval)

    earlier = paths[:index - 1][::-1] if need else []
    before = _candles(scan(earlier, own.schema, lambda t: count(t) - 1 >= need, backwards=True), interval, pip)
    before = {name: values[len(values) - min(need, len(values)):] for name, values in before.items()}
    after = scan(paths[index:], own.schema, lambda t: count(t) >= 2, backwards=False)
    return ticks.analyse(before, _candles(own, interval, pip), _candles(after, interval, pip), lookback, pip)


def write_result(run: TicksRun, universe: int, index: int, table: pa.Table, started: float) -> None:
    """Write the result Parquet of chunk × universe, then the timing of the task that made it."""
    name = run.universe(universe)[0]
    write_parquet(run.layout.result(name, index), table)
    write_json(run.layout.result_timing(name, index), {
        "started": started, "seconds": round(time.time() - started, 3), "peak_rss_mb": peak_rss_mb()})


def result_exists(run: TicksRun, universe: int, index: int) -> bool:
    """Cheap check: the result's name is in its universe folder's (cached) listing."""
    name = run.universe(universe)[0]
    return run.layout.result(name, index).name in listing(run.layout.universe_results(name))


def _results(run: TicksRun, name: str, chunks: tuple[int, ...]) -> Callable[[], Iterator[pa.Table]]:
    return lambda: (read_parquet(run.layout.result(name, index)) for index in chunks)


def _bounds(run: TicksRun, metadata: dict[str, Any], chunks: tuple[int, ...]) -> list[int]:
    selected = [metadata["chunks"][index - 1] for index in chunks]
    return chronological_bounds(selected[0]["first_ns"], selected[-1]["last_ns"], run.recipe.split)


def consolidate_universe(run: TicksRun, metadata: dict[str, Any], universe: int,
                         chunks: tuple[int, ...]) -> dict[str, Any]:
    """Pattern statistics, training set, stats and report of one universe over ``chunks``; manifest last."""
    started = time.time()
    name, interval, lookback = run.universe(universe)
    folder = run.layout.universe_final(name)
    remove_stale_temps(folder)
    tables = _results(run, name, chunks)
    stats, candles = ticks.PatternStats(), 0
    for table in tables():
        stats.update(*(values(table.column(name)) for name in ("pattern", "next_class", "next_body_pips")))
        candles += len(table)
    patterns = stats.table(name, run.recipe.tables["universes"]["min_count"])
    write_parquet(run.layout.patterns(folder), patterns)
    split = write_chronological_split(folder, tables, SPEC, _bounds(run, metadata, chunks))
    timings = [read_json(run.layout.result_timing(name, index)) or {} for index in chunks]
    summary = {
        "dataset": run.recipe.name, "kind": run.recipe.kind.name, "universe": name, "interval_minutes": interval,
        "lookback": lookback, "chunks": list(chunks), "ticks": sum(metadata["chunks"][i - 1]["rows"] for i in chunks),
        "candles": candles, "rows": split["rows"], "groups": split["groups"], "left_out": split["left_out"],
        "input": {"files": metadata["files"], "ticks": metadata["ticks"],
                  "failures_by_reason": metadata["failures"]["by_reason"],
                  "failure_records": "chunks/metadata.json"},
        "split": {"by": "time", **split["bounds"]}, "features": list(ticks.FEATURES),
        "labels": {"next_class": list(ticks.CLASS_NAMES)}, "patterns_seen": len(patterns),
        "stages": {"analysis": _stage(timings),
                   "consolidation": {"seconds": round(time.time() - started, 3), "peak_rss_mb": peak_rss_mb()}},
    }
    write_json(folder / "stats.json", summary)
    write_text(run.layout.report(folder), universe_report(summary, patterns))
    files = [*split["files"], "stats.json", run.layout.patterns(folder).name, run.layout.report(folder).name]
    write_json(run.layout.manifest(folder), {"fingerprint": run.final_fingerprint(name, chunks),
                                             "files": {f: (folder / f).stat().st_size for f in files}})
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


def overall_key(run: TicksRun, universes: tuple[int, ...]) -> str:
    """What the overall outputs are of: ``all:`` and the selected universes' names."""
    return "all:" + ",".join(run.universe(u)[0] for u in universes)


def final_complete(run: TicksRun, folder: Path, key: str, chunks: tuple[int, ...]) -> bool:
    """The manifest in ``folder`` matches ``key`` and ``chunks`` and its files have their recorded sizes."""
    manifest = read_json(run.layout.manifest(folder))
    if not manifest or manifest.get("fingerprint") != run.final_fingerprint(key, chunks):
        return False
    try:
        return all((folder / name).stat().st_size == size for name, size in manifest["files"].items())
    except OSError:
        return False


def consolidate_all(run: TicksRun, metadata: dict[str, Any], universes: tuple[int, ...],
                    chunks: tuple[int, ...], started: float) -> dict[str, Any]:
    """Every selected universe's patterns ranked globally, and the overall performance report."""
    folder = run.layout.final
    names = [run.universe(u)[0] for u in universes]
    summaries = [read_json(run.layout.universe_final(name) / "stats.json") for name in names]
    tables = [read_parquet(run.layout.patterns(run.layout.universe_final(name))) for name in names]
    ranked = ticks.rank_globally(tables)
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
    report = overall_report(run, metadata, summaries, ranked, chunks, stages)
    write_text(run.layout.report(folder), report)
    files = [run.layout.patterns(folder).name, run.layout.report(folder).name]
    write_json(run.layout.manifest(folder), {"fingerprint": run.final_fingerprint(overall_key(run, universes), chunks),
                                             "universes": names, "stages": stages,
                                             "files": {f: (folder / f).stat().st_size for f in files}})
    return stages


def _top(patterns: pa.Table, rank_column: str, count: int = 10) -> str:
    columns = ["universe", "name", "count", "next_up_rate", "next_down_rate", "next_mean_pips", "score", rank_column]
    rows = patterns.select(columns).slice(0, count).to_pylist()
    return markdown_table(columns, [[_fmt(row[c]) for c in columns] for row in rows])


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def universe_report(summary: dict[str, Any], patterns: pa.Table) -> str:
    """``performance_report.md`` of one universe."""
    analysis, consolidation = summary["stages"]["analysis"], summary["stages"]["consolidation"]
    return (
        f"# {summary['universe']}: {summary['interval_minutes']}-minute candles, lookback {summary['lookback']}\n\n"
        + markdown_table(["ticks", "chunks", "candles", "train", "val", "test", "patterns"],
                         [[summary["ticks"], len(summary["chunks"]), summary["candles"], summary["rows"]["train"],
                           summary["rows"]["val"], summary["rows"]["test"], summary["patterns_seen"]]])
        + "\n## Time and memory\n\n"
        + markdown_table(["stage", "tasks", "task seconds", "peak RSS MiB"],
                         [["chunk × universe", analysis["tasks"], analysis["task_seconds"], analysis["peak_rss_mb"]],
                          ["consolidation", 1, consolidation["seconds"], consolidation["peak_rss_mb"]]])
        + f"\n## Top patterns\n\n{_top(patterns, 'rank')}")


def overall_report(run: TicksRun, metadata: dict[str, Any], summaries: list[dict], ranked: pa.Table,
                   chunks: tuple[int, ...], stages: dict[str, dict]) -> str:
    """``performance_report.md`` over all selected universes."""
    tick_rows = metadata["ticks"]
    bad = [[reason, tick_rows[reason]] for reason in ticks.REASONS]
    stage_rows = [[name, s["tasks"], s.get("seconds", s.get("task_seconds")), s.get("wall_seconds", ""),
                   s["peak_rss_mb"]] for name, s in stages.items()]
    return (
        f"# {run.recipe.name}: tick patterns\n\n"
        + markdown_table(["ticks read", "ticks kept", "bad ticks", "chunks", "chunk size", "universes"],
                         [[tick_rows["read"], tick_rows["kept"], tick_rows["bad"], len(chunks),
                           metadata["chunk_size"], len(summaries)]])
        + "\n## Bad ticks\n\n" + markdown_table(["reason", "ticks"], bad)
        + "\n## Time and memory per stage\n\n"
        + markdown_table(["stage", "tasks", "seconds (summed over tasks)", "wall seconds", "peak RSS MiB"], stage_rows)
        + "\n## Universes\n\n"
        + markdown_table(["universe", "candles", "train", "val", "test", "patterns"],
                         [[s["universe"], s["candles"], s["rows"]["train"], s["rows"]["val"], s["rows"]["test"],
                           s["patterns_seen"]] for s in summaries])
        + f"\n## Top patterns overall\n\n{_top(ranked, 'global_rank')}")
