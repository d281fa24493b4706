"""BuildDataset, the task users run: it requires the last task of its kind's flow."""

from __future__ import annotations

import luigi

from pipeline.recipe import load_recipe
from pipeline.tasks.dataset import DatasetTask, SplitDataset
from pipeline.tasks.ticks import BuildTicks

FLOWS: dict[str, type[DatasetTask]] = {
    "files": SplitDataset,
    "ticks": BuildTicks,
}
"""Each flow's final task, by the ``flow`` name a kind declares."""


class BuildDataset(DatasetTask, luigi.WrapperTask):
    """The whole dataset, whatever its kind."""

    def requires(self) -> DatasetTask:
        return FLOWS[load_recipe(self.recipe).kind.flow](recipe=self.recipe)
