"""The "files" flow: ProcessBatch → BuildBatches → MergeBatches → SplitDataset.

Each task is thin: it wires its inputs to its outputs and calls a plain engine function.
Every stage runs alone, e.g. ``luigi --module pipeline MergeBatches --recipe R``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

import luigi

from pipeline import upkeep
from pipeline.config import HEAVY, streaming
from pipeline.engine import frames
from pipeline.engine.batches import (
    batch_is_complete,
    batch_records,
    batches_off_layout,
    build_batch,
    dataset_layout,
    summarise,
    summary_line,
)
from pipeline.engine.cleanup import intermediates_left, remove_intermediates
from pipeline.engine.failures import clear_stop_markers
from pipeline.engine.merge import merge_batches, merge_is_complete
from pipeline.engine.plan import Plan, plan_for
from pipeline.engine.progress import TaskProgress
from pipeline.engine.split import DamagedBatchError, split_dataset, split_is_complete
from pipeline.engine.storage import write_json
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


class DatasetTask(luigi.Task):
    """A task of one dataset: knows its recipe's plan and reports failures in one clear line."""

    recipe = RecipeParameter(description="path of the recipe TOML file")

    @property
    def plan(self) -> Plan:
        return plan_for(load_recipe(self.recipe))

    def progress_weight(self) -> float | None:
        """What this task weighs in the run's progress: the bytes it reads (None: unknown, the mean of the others)."""
        return None

    def on_failure(self, exception: BaseException) -> str:
        if isinstance(exception, PipelineError):
            logger.error("%s failed: %s", self.task_family, exception)
            return str(exception)
        return super().on_failure(exception)


class ProcessBatch(DatasetTask):
    """Process one batch of input files into ``intermediate/batch_NNNN.frames`` (a frame per file, resumable)."""

    index = luigi.IntParameter(description="index of the batch in the sorted input list")

    def progress_weight(self) -> float:
        return sum(file.size for file in self.plan.batches[self.index].files)

    def output(self) -> CheckedTarget:
        plan = self.plan
        return CheckedTarget(plan.layout.batch(self.index), lambda: batch_is_complete(plan, plan.batches[self.index]))

    def complete(self) -> bool:
        done = super().complete()
        if not done:  # checked in Luigi's main process: import the codec once there, not in every forked task
            frames.prepare(self.plan.recipe.tables["batch"]["compression"])
        return done

    def run(self) -> None:
        build_batch(self.plan, self.plan.batches[self.index], TaskProgress(self, "files"))


class BuildBatches(DatasetTask, luigi.WrapperTask):
    """All batches of the dataset; run it alone to stop after ``intermediate/``."""

    recipe = RecipeParameter(description="path of the recipe TOML file. BuildBatches is the batch-only run: it "
                                         "processes the input files into intermediate/ (or the recipe's "
                                         "intermediate_dir) and stops, with no merge and no split")

    def requires(self) -> list[ProcessBatch]:
        return [ProcessBatch(recipe=self.recipe, index=b.index) for b in self.plan.batches]

    def progress_weight(self) -> float:
        return 0.0  # its batches weigh


def dataset_bytes(plan: Plan) -> int:
    """The bytes of every input file: what the merge and the split weigh (they read all the rows)."""
    return sum(file.size for batch in plan.batches for file in batch.files)


class MergeBatches(DatasetTask):
    """Decide the dataset from the batch records (``merged/manifest.json``); copies no rows; re-runs alone."""

    resources = {HEAVY["merge"]: 1}

    def requires(self) -> BuildBatches:
        return BuildBatches(recipe=self.recipe)

    def output(self) -> CheckedTarget:
        plan = self.plan
        return CheckedTarget(plan.layout.merged_manifest, lambda: merge_is_complete(plan))

    def progress_weight(self) -> float:
        return dataset_bytes(self.plan)

    def run(self) -> None:
        remerge(self, self.plan)


def remerge(task: luigi.Task, plan: Plan, damaged: Collection[int] = ()) -> None:
    """Rebuild the batches that are missing, stale or ``damaged`` (by a verified read), alone; then merge.

    The merge reads the batch records only, so the batches' data is verified where it is
    read: by the split. A batch whose rows took another layout than the dataset's (most
    files agree on it) is rebuilt with the dataset's, from its files' outputs: the outcome
    never depends on how files are batched. Rebuilt here, not yielded as ProcessBatch: the
    scheduler ignores a task that turns incomplete within seconds of being reported done
    (stable_done_cooldown_secs).
    """
    for batch in plan.batches:
        if batch.index in damaged or not batch_is_complete(plan, batch):
            logger.warning("batch %d is damaged, missing or stale; rebuilding it alone", batch.index)
            build_batch(plan, batch, TaskProgress(task, f"files of batch {batch.index}"))
    layout = dataset_layout(plan)
    for batch in batches_off_layout(plan, layout):
        build_batch(plan, batch, TaskProgress(task, f"files of batch {batch.index}"), dataset_layout=layout)
    merge_batches(plan)


class SplitDataset(DatasetTask):
    """Assign rows to train/val/test by group and write ``final/``."""

    resources = {HEAVY["split"]: 1}

    cleanup = luigi.BoolParameter(description="once final/ is written, delete the intermediates it was made from "
                                              "(the batches, merged/) as Cleanup does; else they are kept")

    def requires(self) -> MergeBatches | list:
        return [] if split_is_complete(self.plan) else MergeBatches(recipe=self.recipe)  # [] when only cleaning up

    def output(self) -> CheckedTarget:
        plan = self.plan
        return CheckedTarget(plan.layout.final_manifest, lambda: split_is_complete(plan))

    def complete(self) -> bool:
        return super().complete() and not (self.cleanup and intermediates_left(self.plan))

    def progress_weight(self) -> float:
        return dataset_bytes(self.plan)

    def run(self) -> None:
        plan = self.plan
        if not split_is_complete(plan):
            try:
                stats = split_dataset(plan, streaming().chunk_bytes, TaskProgress(self, "outputs"), logger.warning)
            except DamagedBatchError as exc:  # rebuilt once and merged again; never split as it is
                logger.warning("%s; rebuilding them and merging again", exc)
                remerge(self, plan, exc.batches)
                stats = split_dataset(plan, streaming().chunk_bytes, TaskProgress(self, "outputs"), logger.warning)
            logger.info("Summary of %s: %s; final outputs in %s", plan.recipe.name, summary_line(stats),
                        plan.layout.final)
        clear_stop_markers(plan.layout)  # the run is complete
        if self.cleanup:
            remove_intermediates(plan)


class SummariseFiles(DatasetTask):
    """The "each" flow's end: every file has its own output; write ``final/stats.json``."""

    def requires(self) -> BuildBatches:
        return BuildBatches(recipe=self.recipe)

    def output(self) -> CheckedTarget:
        plan = self.plan
        return CheckedTarget(plan.layout.stats, lambda: upkeep.summary_is_complete(plan))

    def run(self) -> None:
        plan = self.plan
        summary = summarise(plan, batch_records(plan))
        write_json(plan.layout.stats, {"dataset": plan.recipe.name, "kind": plan.recipe.kind.name,
                                       "fingerprint": plan.merge_fingerprint, **summary})
        clear_stop_markers(plan.layout)  # the run is complete
        logger.info("Summary of %s: %s; outputs in %s", plan.recipe.name, summary_line(summary), plan.layout.files)


class Status(DatasetTask):
    """Print what is up to date, stale, missing and damaged (to stdout), for any flow; builds nothing.

    ``--verify`` reads every checksum too and names each damaged output; the stage record
    of a damaged output is marked so that the next BuildDataset rebuilds that stage.
    ``python -m pipeline status RECIPE [--verify]`` prints the same without a scheduler.
    """

    verify = luigi.BoolParameter(description="read every output and compare it with its recorded checksum")

    def complete(self) -> bool:
        return False

    def run(self) -> None:
        print("\n".join(upkeep.status(load_recipe(self.recipe), self.verify).lines), flush=True)


class Cleanup(DatasetTask):
    """Delete the flow's intermediates (only files its records list) once its final outputs are complete
    and verified (``python -m pipeline cleanup``)."""

    def complete(self) -> bool:
        complete, removables = upkeep.intermediates(load_recipe(self.recipe))
        return complete and not removables

    def run(self) -> None:
        for line in upkeep.cleanup_lines(upkeep.cleanup(load_recipe(self.recipe))):
            logger.info("Cleanup: %s", line)
