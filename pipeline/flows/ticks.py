"""The "ticks" flow's plain functions: chunk the input, analyse a chunk × universe, consolidate.

They join the time-series engine (``pipeline.engine.series``: layout, chunk files, scans,
chronological split), the tick readers of the ticks kind and the universe analyses
(``pipeline/analyses``), and know nothing of Luigi. ``pipeline/tasks/ticks.py`` wires them
into tasks. Every stage writes a stage record (``records/ticks/...``, engine/records.py)
listing what it wrote; a stage verifies the checksums of what it reads and rebuilds a
damaged input once (``InputError`` if it is still damaged).
"""

from __future__ import annotations

import collections
import functools
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline import analyses
from pipeline.analyses.base import Analysis
from pipeline.engine import series
from pipeline.engine.discovery import InputFile, discover
from pipeline.engine.failures import InputError, describe, failure
from pipeline.engine.layout import claim
from pipeline.engine.records import (
    Stage,
    code_digest,
    current_record,
    damaged,
    is_complete,
    remove_record,
    write_record,
)
from pipeline.engine.series import (
    SelectionError,
    SeriesLayout,
    read_parquet,
    scan,
    values,
    write_chunks,
    write_parquet,
)
from pipeline.engine.storage import digest, read_json, write_json
from pipeline.kinds import ticks
from pipeline.recipe import Recipe, RecipeError

CONTEXT_COLUMNS = ["timestamp", "mid", "spread_pips"]
CHUNKS = "ticks/chunks"
"""Stage record of the chunking (chunk files and their metadata)."""


@dataclass(frozen=True, eq=False)
class TicksRun:
    """What a run derives from the recipe and the input tree: layout, inputs, universes, analysis, fingerprints."""

    recipe: Recipe
    layout: SeriesLayout
    inputs: tuple[InputFile, ...]
    chunk_fingerprint: str
    universes: tuple[tuple[str, int, int], ...]
    analysis: Analysis

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

    @functools.cached_property
    def analysis_digest(self) -> str:
        return code_digest(analyses, self.analysis.analyse, self.analysis.consolidate, ticks, __name__,
                           "pipeline.flows.ticks_consolidate", "pipeline.flows.ticks_report")

    def result_stage(self, universe: int, index: int) -> str:
        return f"ticks/results/{self.universe(universe)[0]}/chunk_{index:03d}"

    def result_fingerprint(self, universe: int, index: int) -> str:
        """What the result of chunk ``index`` × ``universe`` depends on: the chunks, the universe, the code."""
        name, interval, lookback = self.universe(universe)
        return digest([self.chunk_fingerprint, index, name, interval, lookback, self.analysis.name,
                       self.settings["pip_size"], self.analysis_digest])

    def final_key(self, universes: tuple[int, ...], chunks: tuple[int, ...], chunk_count: int) -> str:
        """``""`` for the full build, else ``subsets/u<universes>_c<chunks>`` (its own folder)."""
        if universes == tuple(range(1, len(self.universes) + 1)) and chunks == tuple(range(1, chunk_count + 1)):
            return ""
        return f"subsets/u{compact(universes)}_c{compact(chunks)}"

    def final_folder(self, key: str) -> Path:
        return self.layout.final / key if key else self.layout.final

    def final_stage(self, key: str, universe: int | None = None) -> str:
        parts = ["ticks/final", key, self.universe(universe)[0] if universe else ""]
        return "/".join(part for part in parts if part)

    def final_fingerprint(self, universe: int | None, universes: tuple[int, ...], chunks: tuple[int, ...]) -> str:
        """What the consolidated outputs of ``universe`` (None: the overall ones) over ``chunks`` depend on."""
        table = self.recipe.tables["universes"]
        chosen = (universe,) if universe else universes
        return digest([[self.result_fingerprint(u, c) for u in chosen for c in chunks], universe, list(universes),
                       dict(self.recipe.split), table["min_count"], self.recipe.name])


def compact(numbers: tuple[int, ...]) -> str:
    """``1-5,20`` for (1, 2, 3, 4, 5, 20)."""
    ranges, start = [], None
    for i, n in enumerate(numbers):
        start = n if start is None else start
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            ranges.append(f"{start}-{n}" if n > start else str(n))
            start = None
    return ",".join(ranges)


def make_run(recipe: Recipe) -> TicksRun:
    """The run of ``recipe``: one walk of its input folder; RecipeError (one line) on settings it cannot run."""
    if recipe.split["normalize"]:
        raise RecipeError(f"{recipe.path}: [split] normalize = true is not supported by kind 'ticks' "
                          "(its features are already pips, shares and ratios)")
    table = recipe.tables["universes"]
    try:
        analysis = analyses.resolve(table["analysis"])
    except LookupError as exc:
        raise RecipeError(f"{recipe.path}: [universes] analysis: {exc}") from None
    problem = analysis.check(list(table["lookbacks"]))
    if problem:
        raise RecipeError(f"{recipe.path}: [universes] lookbacks {problem}")
    inputs = tuple(discover(recipe.input_dir, recipe.pattern))
    kind = recipe.kind
    fingerprint = digest([kind.name, kind.version, dict(recipe.tables["ticks"]), recipe.on_error,
                          [(f.relative, f.size, f.mtime_ns) for f in inputs], code_digest(ticks, series)])
    universes = tuple(ticks.universes(table))
    return TicksRun(recipe, SeriesLayout(recipe.output_dir), inputs, fingerprint, universes, analysis)


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
    """Stream every input file, drop and count bad ticks, write the chunk files, their metadata, the record.

    Only the files of the previous chunking's record are removed first; results are kept (their
    fingerprints name the chunking they were made from).
    """
    started, layout, settings, root = time.time(), run.layout, run.settings, run.layout.root
    claim(root, run.recipe.name)
    remove_record(root, CHUNKS)
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
    write_record(root, CHUNKS, run.chunk_fingerprint,
                 [layout.chunks / c["file"] for c in chunks] + [layout.chunk_metadata],
                 {"chunks": len(chunks), "ticks": metadata["ticks"], "files": metadata["files"]})
    return metadata


def chunks_complete(run: TicksRun) -> bool:
    """The chunking's record is current and its files have their recorded sizes."""
    return is_complete(run.layout.root, CHUNKS, run.chunk_fingerprint)


def chunk_metadata(run: TicksRun) -> dict[str, Any]:
    """The metadata written by :func:`chunk_input` (which must have run)."""
    metadata = read_json(run.layout.chunk_metadata)
    if not chunks_complete(run) or not metadata or metadata.get("fingerprint") != run.chunk_fingerprint:
        raise InputError(f"{run.layout.chunk_metadata} is missing or stale: chunk the input first (ChunkTicks)")
    return metadata


_VERIFIED: set[tuple[str, int, int]] = set()
"""Chunk files whose checksum this process has verified: (path, size, mtime_ns)."""


def verified_chunks(run: TicksRun, metadata: dict[str, Any], indices: list[int],
                    rechunk: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The metadata, after checking the checksums of chunks ``indices``; re-chunks once if one is damaged."""
    root = run.layout.root
    names = [f"chunks/{metadata['chunks'][i - 1]['file']}" for i in indices]
    todo = [n for n in names if _stamp(root / n) not in _VERIFIED]
    record = current_record(root, CHUNKS, run.chunk_fingerprint)
    problems = damaged(root, record, todo) if record else {CHUNKS: "the chunking's record is missing or stale"}
    if problems:
        metadata = rechunk()
        record = current_record(root, CHUNKS, run.chunk_fingerprint)
        problems = damaged(root, record, names) if record else {CHUNKS: "no record after re-chunking"}
        if problems:
            raise InputError(f"{root / 'chunks'}: still damaged after re-chunking: {next(iter(problems.values()))}")
    _VERIFIED.update(_stamp(root / n) for n in names)
    return metadata


def result_reads(metadata: dict[str, Any], index: int) -> list[int]:
    """The chunks the result of chunk ``index`` reads: its own and its neighbours (for their edge candles)."""
    return list(range(max(1, index - 1), min(len(metadata["chunks"]), index + 1) + 1))


def verify_ahead(run: TicksRun, index: int) -> None:
    """Check the checksums of the chunk files the result of chunk ``index`` reads, without repairing any.

    Luigi's main process calls it when it schedules the task: the task's forked process inherits
    the files found intact as verified. A damaged file is left to the task, which re-chunks.
    """
    if not chunks_complete(run):
        return
    root = run.layout.root
    metadata = chunk_metadata(run)
    names = [f"chunks/{metadata['chunks'][i - 1]['file']}" for i in result_reads(metadata, index)]
    todo = [n for n in names if _stamp(root / n) not in _VERIFIED]
    record = current_record(root, CHUNKS, run.chunk_fingerprint)
    if record and todo:
        problems = damaged(root, record, todo)
        _VERIFIED.update(_stamp(root / n) for n in todo if n not in problems)


def _stamp(path: Path) -> tuple[str, int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (str(path), -1, -1)
    return (str(path), stat.st_size, stat.st_mtime_ns)


def _candles(table: pa.Table, interval: int, pip: float) -> dict[str, np.ndarray]:
    ts, mid, spread = (values(table.column(name)) for name in CONTEXT_COLUMNS)
    return ticks.candles(ts, mid, spread, interval, pip)


def analyse_chunk(run: TicksRun, metadata: dict[str, Any], index: int, universe: int) -> pa.Table:
    """The analysis of chunk ``index`` in one universe, reading only the neighbours' edges it needs."""
    _, interval, lookback = run.universe(universe)
    pip, layout = run.settings["pip_size"], run.layout
    paths = [layout.chunks / chunk["file"] for chunk in metadata["chunks"]]
    own = read_parquet(paths[index - 1], columns=CONTEXT_COLUMNS)
    need, after_need = run.analysis.before(lookback), run.analysis.after

    def count(table: pa.Table) -> int:
        return ticks.bucket_count(values(table.column("timestamp")), interval)

    earlier = paths[:index - 1][::-1] if need else []
    before = _candles(scan(earlier, own.schema, lambda t: count(t) - 1 >= need, backwards=True), interval, pip)
    before = {name: array[len(array) - min(need, len(array)):] for name, array in before.items()}
    later = paths[index:] if after_need else []
    after = _candles(scan(later, own.schema, lambda t: count(t) >= after_need + 1, backwards=False), interval, pip)
    after = {name: array[:after_need] for name, array in after.items()}
    mine = _candles(own, interval, pip)
    joined = {name: np.concatenate([before[name], mine[name], after[name]]) for name in mine}
    rows = np.arange(len(before["start"]), len(before["start"]) + len(mine["start"]))
    return run.analysis.analyse(joined, rows, lookback, pip)


def write_result(run: TicksRun, universe: int, index: int, table: pa.Table, started: float) -> None:
    """Write the result Parquet of chunk × universe and its timing, then the stage record."""
    name = run.universe(universe)[0]
    result, timing = run.layout.result(name, index), run.layout.result_timing(name, index)
    write_parquet(result, table)
    write_json(timing, {"started": started, "seconds": round(time.time() - started, 3), "peak_rss_mb": peak_rss_mb()})
    write_record(run.layout.root, run.result_stage(universe, index), run.result_fingerprint(universe, index),
                 [result, timing], {"rows": len(table)})


def result_complete(run: TicksRun, universe: int, index: int) -> bool:
    """Cheap check: the result's record is current and its files have their sizes."""
    return is_complete(run.layout.root, run.result_stage(universe, index), run.result_fingerprint(universe, index))


def build_result(run: TicksRun, metadata: dict[str, Any], universe: int, index: int,
                 rechunk: Callable[[], dict[str, Any]]) -> None:
    """Verify the chunk files the result reads (re-chunking once if damaged), analyse, write."""
    started = time.time()
    metadata = verified_chunks(run, metadata, result_reads(metadata, index), rechunk)
    write_result(run, universe, index, analyse_chunk(run, metadata, index, universe), started)


def verified_results(run: TicksRun, metadata: dict[str, Any], universe: int, chunks: tuple[int, ...],
                     rechunk: Callable[[], dict[str, Any]]) -> None:
    """Check every result of ``universe`` over ``chunks``; rebuild (once) those missing, stale or damaged."""
    root = run.layout.root
    for index in chunks:
        stage, fingerprint = run.result_stage(universe, index), run.result_fingerprint(universe, index)
        record = current_record(root, stage, fingerprint)
        if record and not damaged(root, record, [n for n in record.outputs if n.endswith(".parquet")]):
            continue
        build_result(run, metadata, universe, index, rechunk)
        record = current_record(root, stage, fingerprint)
        if not record or damaged(root, record):
            raise InputError(f"{root / stage}: still damaged after rebuilding it")


def flow_stages(recipe: Recipe) -> list[Stage]:
    """Every stage a full build of ``recipe`` expects, with its current fingerprint (for Status and Cleanup).

    Result and consolidation stages are listed once the chunking is complete (their count is its chunk count).
    """
    run = make_run(recipe)
    stages = [Stage(CHUNKS, run.chunk_fingerprint, True)]
    if not chunks_complete(run):
        return stages
    count = len(chunk_metadata(run)["chunks"])
    universes, chunks = tuple(range(1, len(run.universes) + 1)), tuple(range(1, count + 1))
    stages += [Stage(run.result_stage(u, c), run.result_fingerprint(u, c), True) for u in universes for c in chunks]
    stages += [Stage(run.final_stage("", u), run.final_fingerprint(u, universes, chunks), False) for u in universes]
    stages.append(Stage(run.final_stage(""), run.final_fingerprint(None, universes, chunks), False))
    return stages
