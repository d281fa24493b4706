"""BuildDataset, the task users run: it requires the last task of its kind's flow, then writes the report."""

from __future__ import annotations

from pipeline.engine.layout import Layout
from pipeline.engine.report import report_is_complete, write_report
from pipeline.engine.targets import CheckedTarget
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

    def requires(self) -> DatasetTask:
        return FLOWS[load_recipe(self.recipe).kind.flow](recipe=self.recipe)

    def complete(self) -> bool:
        """Done when the flow's final task is (fresh against the inputs) and the report describes it."""
        return self.requires().complete() and super().complete()

    def output(self) -> CheckedTarget:
        layout = Layout(load_recipe(self.recipe).output_dir)
        return CheckedTarget(layout.report / "report.md", lambda: report_is_complete(layout))

    def run(self) -> None:
        recipe = load_recipe(self.recipe)
        write_report(Layout(recipe.output_dir), recipe.name)
