"""The "files" flow: ProcessBatch → BuildBatches → MergeBatches → SplitDataset.

Each task is thin: it wires its inputs to its outputs and calls a plain engine function.
Every stage runs alone, e.g. ``luigi --module pipeline MergeBatches --recipe R``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import luigi

from pipeline import upkeep
from pipeline.config import processing, streaming
from pipeline.engine.batches import (
    batch_is_complete,
    batch_records,
    build_batch,
    summarise,
    summary_line,
    verify_batch,
)
from pipeline.engine.explain import check_splits, split_rows
from pipeline.engine.merge import merge_batches, merge_is_complete
from pipeline.engine.plan import Plan, plan_for
from pipeline.engine.progress import TaskProgress
from pipeline.engine.split import split_dataset, split_is_complete
from pipeline.engine.storage import remove_stale_temps, write_json
from pipeline.engine.targets import CheckedTarget
from pipeline.errors import PipelineError
from pipeline.recipe import load_recipe

logger = logging.getLogger("luigi-interface")


class RecipeParameter(luigi.Parameter):
    """Path of a recipe TOML; made absolute and validated when the task is created."""

    def normalize(self, x: str) -> str:
        path = str(Path(x).resolve())
        load_recipe(path)
        return path


def batch_settings() -> dict:
    """The luigi.cfg settings of build_batch: memory budget and checkpoint threshold."""
    return {"hold_bytes": streaming().chunk_bytes, "checkpoint_s": processing().checkpoint_ms / 1000}


class DatasetTask(luigi.Task):
    """A task of one dataset: knows its recipe's plan and reports failures in one clear line."""

    recipe = RecipeParameter(description="path of the recipe TOML file")

    @property
    def plan(self) -> Plan:
        return plan_for(load_recipe(self.recipe))

    def on_failure(self, exception: BaseException) -> str:
        if isinstance(exception, PipelineError):
            logger.error("%s failed: %s", self.task_family, exception)
            return str(exception)
        return super().on_failure(exception)


class ProcessBatch(DatasetTask):
    """Process one batch of input files: one output per file, then ``intermediate/batch_NNNN.npz``."""

    index = luigi.IntParameter(description="index of the batch in the sorted input list")

    def output(self) -> CheckedTarget:
        plan = self.plan
        return CheckedTarget(plan.layout.batch(self.index), lambda: batch_is_complete(plan, plan.batches[self.index]))

    def run(self) -> None:
        build_batch(self.plan, self.plan.batches[self.index], TaskProgress(self, "files"), **batch_settings())


class BuildBatches(DatasetTask, luigi.WrapperTask):
    """All batches of the dataset; run it alone to stop after ``intermediate/``."""

    def requires(self) -> list[ProcessBatch]:
        return [ProcessBatch(recipe=self.recipe, index=b.index) for b in self.plan.batches]


class MergeBatches(DatasetTask):
    """Stream every batch into ``merged/<array>.npy``; re-runs alone on existing batches."""

    def requires(self) -> BuildBatches:
        return BuildBatches(recipe=self.recipe)

    def output(self) -> CheckedTarget:
        plan = self.plan
        return CheckedTarget(plan.layout.merged_manifest, lambda: merge_is_complete(plan))

    def run(self) -> None:
        plan = self.plan
        # Rebuilt here, not yielded as ProcessBatch: the scheduler ignores a task that turns
        # incomplete within seconds of being reported done (stable_done_cooldown_secs).
        for batch in plan.batches:
            problem = verify_batch(plan, batch)
            if problem:
                logger.warning("batch %d is corrupt (%s); rebuilding it alone", batch.index, problem)
                build_batch(plan, batch, TaskProgress(self, f"files of batch {batch.index}"), **batch_settings())
        progress = TaskProgress(self, "arrays")
        merge_batches(plan, streaming().chunk_bytes, progress)


class SplitDataset(DatasetTask):
    """Assign rows to train/val/test by group and write ``final/``."""

    def requires(self) -> MergeBatches:
        return MergeBatches(recipe=self.recipe)

    def output(self) -> CheckedTarget:
        plan = self.plan
        return CheckedTarget(plan.layout.final_manifest, lambda: split_is_complete(plan))

    def run(self) -> None:
        remove_stale_temps(self.plan.layout.root)
        check_splits(self.plan, split_rows(self.plan, streaming().chunk_bytes), logger.warning)
        stats = split_dataset(self.plan, streaming().chunk_bytes, TaskProgress(self, "outputs"))
        logger.info("Summary of %s: %s; final outputs in %s", self.plan.recipe.name,
                    summary_line(stats), self.plan.layout.final)


class SummariseFiles(DatasetTask):
    """The "each" flow's end: every file has its own output; write ``final/stats.json``."""

    def requires(self) -> BuildBatches:
        return BuildBatches(recipe=self.recipe)

    def output(self) -> CheckedTarget:
        plan = self.plan
        return CheckedTarget(plan.layout.stats, lambda: upkeep.summary_is_complete(plan))

    def run(self) -> None:
        plan = self.plan
        remove_stale_temps(plan.layout.root)
        summary = summarise(plan, batch_records(plan))
        write_json(plan.layout.stats, {"dataset": plan.recipe.name, "kind": plan.recipe.kind.name,
                                       "fingerprint": plan.merge_fingerprint, **summary})
        logger.info("Summary of %s: %s; outputs in %s", plan.recipe.name, summary_line(summary), plan.layout.files)


class Status(DatasetTask):
    """Print what is up to date, stale and missing (to stdout), for any flow; builds and writes nothing.

    ``python -m pipeline status RECIPE`` prints the same without a scheduler.
    """

    def complete(self) -> bool:
        return False

    def run(self) -> None:
        print("\n".join(upkeep.status(load_recipe(self.recipe)).lines), flush=True)


class Cleanup(DatasetTask):
    """Delete the flow's intermediates once its final outputs are complete (``python -m pipeline cleanup``)."""

    def complete(self) -> bool:
        complete, removables = upkeep.intermediates(load_recipe(self.recipe))
        return complete and not removables

    def run(self) -> None:
        for line in upkeep.cleanup_lines(upkeep.cleanup(load_recipe(self.recipe))):
            logger.info("Cleanup: %s", line)
