"""The "ticks" flow: ChunkTicks → AnalyseChunk (chunk × universe) → ConsolidateUniverse → BuildTicks.

``luigi --module pipeline BuildTicks --recipe R [--universes "1,5,10-15"] [--chunks "1-6,12"]``;
BuildDataset runs BuildTicks with everything selected (``--BuildTicks-chunks`` narrows it).
The recipe's ``[universes] strategy`` orders the chunk × universe tasks through priorities.
"""

from __future__ import annotations

import functools
import importlib
import logging
import time
from types import ModuleType
from typing import TYPE_CHECKING

import luigi
import psutil

from pipeline.config import HEAVY, series
from pipeline.engine.progress import TaskProgress
from pipeline.engine.records import record_path
from pipeline.engine.storage import remove_stale_temps
from pipeline.engine.targets import CheckedTarget
from pipeline.recipe import Recipe, load_recipe
from pipeline.tasks.dataset import DatasetTask

if TYPE_CHECKING:
    from pipeline.engine.series import SeriesLayout
    from pipeline.flows.ticks import TicksRun

logger = logging.getLogger("luigi-interface")
FIRST = 10**9
"""Priority of consolidation tasks: they list their chunk × universe tasks before any of those runs."""


class SelectionParameter(luigi.Parameter):
    """A selection such as ``"1,5,10-15,20"`` (empty: all), checked strictly and written in canonical form."""

    def normalize(self, x: str) -> str:
        from pipeline.engine.series import parse_selection  # see _flow

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
    run = _flow().run_for(recipe)
    chosen = recipe.tables["universes"]["strategy"]
    if chosen != "auto":
        return chosen
    return "universe" if psutil.virtual_memory().available >= 2 * run.input_bytes else "chunked"


@functools.lru_cache(maxsize=1)
def _flow() -> ModuleType:
    """The ticks flow's functions, imported when a ticks task first needs them: not with the package, as they
    load pyarrow. pandas is imported with them, in Luigi's main process: pyarrow imports it on its first numpy
    conversion, which would cost every forked task 0.3-1 s; forked tasks inherit the loaded module instead."""
    importlib.import_module("pandas")
    return importlib.import_module("pipeline.flows.ticks")


def _selection(text: str, count: int, option: str) -> tuple[int, ...]:
    """The numbers ``text`` selects among 1..``count`` (empty: all); a one-line error names ``option``."""
    from pipeline.engine.series import parse_selection, resolve_selection  # see _flow

    return resolve_selection(parse_selection(text, option), count, option)


class TicksTask(DatasetTask):
    """A task of the ticks flow."""

    @property
    def flow(self) -> ModuleType:
        """The ticks flow's plain functions (``pipeline/flows/ticks.py``)."""
        return _flow()

    @property
    def consolidation(self) -> ModuleType:
        """The flow's consolidation (``pipeline/flows/ticks_consolidate.py``), imported with the flow."""
        _flow()
        return importlib.import_module("pipeline.flows.ticks_consolidate")

    @property
    def ticks_run(self) -> TicksRun:
        return _flow().run_for(load_recipe(self.recipe))

    @property
    def layout(self) -> SeriesLayout:
        return self.ticks_run.layout


def _rechunk(run: TicksRun):
    """Re-chunking with the configured settings: how a stage repairs a damaged chunk file."""
    config = series()
    return lambda: _flow().chunk_input(run, config.block_bytes, config.row_group_rows, config.compression)


class ChunkTicks(TicksTask):
    """Stream the input into ``chunks/chunk_NNN_<period>.parquet`` and ``chunks/metadata.json``."""

    def output(self) -> CheckedTarget:
        return CheckedTarget(self.layout.chunk_metadata, lambda: self.flow.chunks_complete(self.ticks_run))

    def run(self) -> None:
        config = series()
        self.flow.chunk_input(self.ticks_run, config.block_bytes, config.row_group_rows, config.compression,
                              TaskProgress(self, "files"))


class AnalyseChunk(TicksTask):
    """The universe analysis of one chunk: ``results/<universe>/chunk_NNN.parquet``."""

    chunk = luigi.IntParameter(description="chunk number (1-based)")
    universe = luigi.IntParameter(description="universe number (1-based)")
    resources = {HEAVY["universe"]: 1}

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
                             lambda: self.flow.result_complete(run, self.universe, self.chunk))

    def run(self) -> None:
        run = self.ticks_run
        self.flow.build_result(run, self.flow.chunk_metadata(run), self.universe, self.chunk, _rechunk(run))


@AnalyseChunk.event_handler(luigi.Event.DEPENDENCY_DISCOVERED)
def _verify_ahead(task: AnalyseChunk, _dependency: luigi.Task) -> None:
    """An AnalyseChunk to run, found in Luigi's main process: check its chunk files here, each once per build,
    rather than in every forked task (three ~40 MB files per task of a year's monthly chunks)."""
    task.flow.verify_ahead(task.ticks_run, task.chunk)


class ConsolidateUniverse(TicksTask):
    """One universe over the selected chunks: patterns, training set, stats, report (in the build's folder)."""

    universe = luigi.IntParameter(description="universe number (1-based)")
    universes = SelectionParameter(default="", description="universes")
    chunks = SelectionParameter(default="", description="chunks")
    priority = FIRST
    resources = {HEAVY["universe"]: 1}

    def _chosen(self) -> tuple[tuple[int, ...], tuple[int, ...], int]:
        run = self.ticks_run
        count = len(self.flow.chunk_metadata(run)["chunks"])
        chunks = _selection(self.chunks, count, "--chunks")
        universes = _selection(self.universes, len(run.universes), "--universes")
        return universes, chunks, count

    def requires(self) -> ChunkTicks:
        return ChunkTicks(recipe=self.recipe)

    def output(self) -> CheckedTarget:
        run = self.ticks_run
        return CheckedTarget(record_path(run.layout.root, run.final_stage("", self.universe)), self._complete)

    def _complete(self) -> bool:
        run = self.ticks_run
        if not self.flow.chunks_complete(run):
            return False
        universes, chunks, count = self._chosen()
        return self.consolidation.final_complete(run, self.universe, universes, chunks, count)

    def run(self):
        universes, chunks, _ = self._chosen()
        yield [AnalyseChunk(recipe=self.recipe, chunk=c, universe=self.universe) for c in chunks]
        run = self.ticks_run  # dynamic: the chunk count is known once ChunkTicks has run
        self.consolidation.consolidate_universe(run, self.flow.chunk_metadata(run), self.universe, chunks, universes,
                                       _rechunk(run))


class BuildTicks(TicksTask):
    """Every selected universe consolidated, then the overall ``final_patterns.parquet``, report and stats.

    A full build writes ``final/``; a selection of universes or chunks writes
    ``final/subsets/u<universes>_c<chunks>/`` and never touches the full build.
    """

    universes = SelectionParameter(default="", description="universes")
    chunks = SelectionParameter(default="", description="chunks")

    def __init__(self, *args, **kwargs):
        """Check the recipe and the selections while Luigi parses the command: errors print as one line."""
        super().__init__(*args, **kwargs)
        self._universes()
        if self.flow.chunks_complete(self.ticks_run):
            self._chunks()

    def _universes(self) -> tuple[int, ...]:
        count = len(self.ticks_run.universes)
        return _selection(self.universes, count, "--universes")

    def requires(self) -> list[luigi.Task]:
        return [ChunkTicks(recipe=self.recipe)] + [
            ConsolidateUniverse(recipe=self.recipe, universe=u, universes=self.universes, chunks=self.chunks)
            for u in self._universes()]

    def output(self) -> CheckedTarget:
        return CheckedTarget(self.layout.final / "stats.json", self._complete)

    def _chunks(self) -> tuple[int, ...]:
        count = len(self.flow.chunk_metadata(self.ticks_run)["chunks"])
        return _selection(self.chunks, count, "--chunks")

    def _complete(self) -> bool:
        run = self.ticks_run
        if not self.flow.chunks_complete(run):
            return False
        chunks = self._chunks()
        count = len(self.flow.chunk_metadata(run)["chunks"])
        return self.consolidation.final_complete(run, None, self._universes(), chunks, count)

    def run(self) -> None:
        run, started = self.ticks_run, time.time()
        remove_stale_temps(self.layout.root)
        metadata = self.flow.chunk_metadata(run)
        universes, chunks = self._universes(), self._chunks()
        key = run.final_key(universes, chunks, len(metadata["chunks"]))
        if key:
            logger.info("BuildTicks: a selection of universes %s and chunks %s: writing %s (the full build in %s is "
                        "not touched)", self.universes or "all", self.chunks or "all", run.final_folder(key),
                        run.layout.final)
        self.consolidation.consolidate_all(run, metadata, universes, chunks, started, _rechunk(run))
