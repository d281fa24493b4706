"""The "ticks" flow: ChunkTicks → AnalyseChunk (chunk × universe) → ConsolidateUniverse → BuildTicks.

``luigi --module pipeline BuildTicks --recipe R [--universes "1,5,10-15"] [--chunks "1-6,12"]``;
BuildDataset runs BuildTicks with everything selected (``--BuildTicks-chunks`` narrows it).
The recipe's ``[universes] strategy`` orders the chunk × universe tasks through priorities.
"""

from __future__ import annotations

import functools
import importlib
import time

import luigi
import psutil

from pipeline.config import series
from pipeline.engine.progress import TaskProgress
from pipeline.engine.series import SeriesLayout, parse_selection, resolve_selection
from pipeline.engine.storage import remove_stale_temps
from pipeline.engine.targets import CheckedTarget
from pipeline.flows import ticks as flow
from pipeline.recipe import Recipe, load_recipe
from pipeline.tasks.dataset import DatasetTask

FIRST = 10**9
"""Priority of consolidation tasks: they list their chunk × universe tasks before any of those runs."""


class SelectionParameter(luigi.Parameter):
    """A selection such as ``"1,5,10-15,20"`` (empty: all), checked strictly and written in canonical form."""

    def normalize(self, x: str) -> str:
        numbers = parse_selection(str(x), f"--{self.description or 'selection'}")
        ranges, start = [], None
        for i, n in enumerate(numbers):
            start = n if start is None else start
            if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
                ranges.append(f"{start}-{n}" if n > start else str(n))
                start = None
        return ",".join(ranges)


@functools.lru_cache(maxsize=8)
def _strategy(recipe: Recipe) -> str:
    """The recipe's strategy; ``auto`` is ``universe`` when twice the input fits in free memory, else ``chunked``."""
    run = flow.run_for(recipe)
    chosen = recipe.tables["universes"]["strategy"]
    if chosen != "auto":
        return chosen
    return "universe" if psutil.virtual_memory().available >= 2 * run.input_bytes else "chunked"


@functools.lru_cache(maxsize=1)
def _preload() -> None:
    """Import pandas once in Luigi's main process: pyarrow imports it on its first numpy conversion, which
    would cost every forked task 0.3-1 s; forked tasks inherit the loaded module instead."""
    importlib.import_module("pandas")


class TicksTask(DatasetTask):
    """A task of the ticks flow."""

    @property
    def ticks_run(self) -> flow.TicksRun:
        _preload()
        return flow.run_for(load_recipe(self.recipe))

    @property
    def layout(self) -> SeriesLayout:
        return self.ticks_run.layout


class ChunkTicks(TicksTask):
    """Stream the input into ``chunks/chunk_NNN_<period>.parquet`` and ``chunks/metadata.json``."""

    def output(self) -> CheckedTarget:
        return CheckedTarget(self.layout.chunk_metadata, lambda: flow.chunks_complete(self.ticks_run))

    def run(self) -> None:
        config = series()
        flow.chunk_input(self.ticks_run, config.block_bytes, config.row_group_rows, config.compression,
                         TaskProgress(self, "files"))


class AnalyseChunk(TicksTask):
    """Candles, window features and patterns of one chunk in one universe: ``results/<universe>/chunk_NNN``."""

    chunk = luigi.IntParameter(description="chunk number (1-based)")
    universe = luigi.IntParameter(description="universe number (1-based)")

    @property
    def priority(self) -> int:
        if _strategy(load_recipe(self.recipe)) == "chunked":
            return -(self.chunk * 1000 + self.universe)
        return -(self.universe * 100_000 + self.chunk)

    def requires(self) -> ChunkTicks:
        return ChunkTicks(recipe=self.recipe)

    def output(self) -> CheckedTarget:
        run = self.ticks_run
        return CheckedTarget(run.layout.result(run.universe(self.universe)[0], self.chunk),
                             lambda: flow.result_exists(run, self.universe, self.chunk))

    def run(self) -> None:
        started, run = time.time(), self.ticks_run
        table = flow.analyse_chunk(run, flow.chunk_metadata(run), self.chunk, self.universe)
        flow.write_result(run, self.universe, self.chunk, table, started)


class ConsolidateUniverse(TicksTask):
    """One universe over the selected chunks: ``final/<universe>/`` patterns, training set, stats, report."""

    universe = luigi.IntParameter(description="universe number (1-based)")
    chunks = SelectionParameter(default="", description="chunks")
    priority = FIRST

    def _analyses(self) -> list[AnalyseChunk]:
        run = self.ticks_run
        count = len(flow.chunk_metadata(run)["chunks"])
        chosen = resolve_selection(parse_selection(self.chunks, "--chunks"), count, "--chunks")
        return [AnalyseChunk(recipe=self.recipe, chunk=c, universe=self.universe) for c in chosen]

    def requires(self) -> ChunkTicks:
        return ChunkTicks(recipe=self.recipe)

    def output(self) -> CheckedTarget:
        run = self.ticks_run
        name = run.universe(self.universe)[0]
        return CheckedTarget(run.layout.manifest(run.layout.universe_final(name)), self._complete)

    def _complete(self) -> bool:
        run = self.ticks_run
        if not flow.chunks_complete(run):
            return False
        chunks = tuple(task.chunk for task in self._analyses())
        name = run.universe(self.universe)[0]
        return flow.final_complete(run, run.layout.universe_final(name), name, chunks)

    def run(self):
        analyses = self._analyses()
        yield analyses  # dynamic: the chunk count is known once ChunkTicks has run
        run = self.ticks_run
        chunks = tuple(task.chunk for task in analyses)
        flow.consolidate_universe(run, flow.chunk_metadata(run), self.universe, chunks)


class BuildTicks(TicksTask):
    """Every selected universe consolidated, then ``final/final_patterns.parquet`` and ``performance_report.md``."""

    universes = SelectionParameter(default="", description="universes")
    chunks = SelectionParameter(default="", description="chunks")

    def _universes(self) -> tuple[int, ...]:
        count = len(self.ticks_run.universes)
        return resolve_selection(parse_selection(self.universes, "--universes"), count, "--universes")

    def requires(self) -> list[luigi.Task]:
        return [ChunkTicks(recipe=self.recipe)] + [
            ConsolidateUniverse(recipe=self.recipe, universe=u, chunks=self.chunks) for u in self._universes()]

    def output(self) -> CheckedTarget:
        return CheckedTarget(self.layout.manifest(self.layout.final), self._complete)

    def _chunks(self) -> tuple[int, ...]:
        count = len(flow.chunk_metadata(self.ticks_run)["chunks"])
        return resolve_selection(parse_selection(self.chunks, "--chunks"), count, "--chunks")

    def _complete(self) -> bool:
        run = self.ticks_run
        if not flow.chunks_complete(run):
            return False
        return flow.final_complete(run, run.layout.final, flow.overall_key(run, self._universes()), self._chunks())

    def run(self) -> None:
        run, started = self.ticks_run, time.time()
        remove_stale_temps(self.layout.root)
        flow.consolidate_all(run, flow.chunk_metadata(run), self._universes(), self._chunks(), started)
