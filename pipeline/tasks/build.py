"""BuildDataset, the task users run: it requires the last task of its kind's flow, then writes the report."""

from __future__ import annotations

import luigi

from pipeline.engine.cleanup import intermediates_left, remove_intermediates
from pipeline.engine.layout import Layout
from pipeline.engine.report import report_is_complete, write_report
from pipeline.engine.targets import CheckedTarget
from pipeline.errors import PipelineError
from pipeline.recipe import load_recipe
from pipeline.tasks.dataset import DatasetTask, SplitDataset, SummariseFiles
from pipeline.tasks.ptv import TrackParticles
from pipeline.tasks.ticks import BuildTicks

FLOWS: dict[str, type[DatasetTask]] = {
    "files": SplitDataset,
    "each": SummariseFiles,
    "ptv": TrackParticles,
    "ticks": BuildTicks,
}
"""Each flow's final task, by the ``flow`` name a kind declares."""


class BuildDataset(DatasetTask):
    """The whole dataset, whatever its kind, and its run report (``report/report.md``)."""

    cleanup = luigi.BoolParameter(description="after final/ and the report, delete the intermediates "
                                              "(the batches, merged/) as Cleanup does; else they are kept. To stop "
                                              "after the batches, run BuildBatches (files flow only)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        kind = load_recipe(self.recipe).kind
        if self.cleanup and kind.flow != "files":
            raise PipelineError(f"{self.recipe}: --cleanup applies to the files flow; kind {kind.name!r} runs the "
                                f"{kind.flow!r} flow")

    def requires(self) -> DatasetTask:
        return FLOWS[load_recipe(self.recipe).kind.flow](recipe=self.recipe)

    def complete(self) -> bool:
        """Done when the flow's final task is (fresh against the inputs) and the report describes it."""
        done = self.requires().complete() and super().complete()
        return done and not (self.cleanup and intermediates_left(self.plan))

    def output(self) -> CheckedTarget:
        layout = Layout.of(load_recipe(self.recipe))
        return CheckedTarget(layout.report / "report.md", lambda: report_is_complete(layout))

    def run(self) -> None:
        recipe = load_recipe(self.recipe)
        write_report(Layout.of(recipe), recipe.name)
        if self.cleanup:  # after the report, which reads the batch records
            remove_intermediates(self.plan)
