"""The "ptv" flow: one PtvChunk per frame chunk, then TrackParticles over the whole range.

Each task is thin: it wires the plan's chunk to its record and calls the kind's engine.
``luigi --module pipeline PtvChunk --recipe R --chunk 3`` runs one chunk alone.
"""

from __future__ import annotations

import luigi

from pipeline.config import HEAVY
from pipeline.engine.progress import TaskProgress
from pipeline.engine.targets import CheckedTarget
from pipeline.errors import PipelineError
from pipeline.kinds.ptv import PtvPlan, recipe_plan
from pipeline.kinds.ptv_engine import chunk_is_complete, run_chunk, track, tracking_is_complete
from pipeline.recipe import load_recipe
from pipeline.tasks.dataset import DatasetTask


class PtvTask(DatasetTask):
    """A task of a ptv recipe.

    An experiment or chunk that fails validation makes the task incomplete with no
    requirements, so that its ``run`` raises the error and Luigi reports it in one line as
    a failed task.
    """

    @property
    def ptv(self) -> PtvPlan:
        return recipe_plan(load_recipe(self.recipe))

    def valid_plan(self) -> PtvPlan | None:
        try:
            return self.ptv
        except PipelineError:
            return None

    def complete(self) -> bool:
        try:
            return super().complete()
        except PipelineError:
            return False


class PtvChunk(PtvTask):
    """Per-frame processing of one chunk: ``sequence/`` outputs per frame, then ``chunks/chunk_NNNN.json``."""

    chunk = luigi.IntParameter(description="index of the frame chunk")

    def output(self) -> CheckedTarget:
        plan = self.ptv
        chunk = plan.chunk(self.chunk)
        return CheckedTarget(plan.layout.chunk_record(self.chunk), lambda: chunk_is_complete(plan, chunk))

    def run(self) -> None:
        plan = self.ptv
        run_chunk(plan, plan.chunk(self.chunk), TaskProgress(self, "frames"))


class TrackParticles(PtvTask):
    """Tracking over all frames once every chunk is done: ``res/``, ``img/``, trajectories and summary."""

    resources = {HEAVY["tracking"]: 1}

    def requires(self) -> list[PtvChunk]:
        plan = self.valid_plan()
        return [PtvChunk(recipe=self.recipe, chunk=chunk.index) for chunk in plan.chunks] if plan else []

    def output(self) -> CheckedTarget:
        plan = self.ptv
        return CheckedTarget(plan.layout.tracking_record, lambda: tracking_is_complete(plan))

    def run(self) -> None:
        track(self.ptv, TaskProgress(self, "steps"))
