"""The Luigi tasks users run: ``luigi --module pipeline <Task> --recipe PATH``."""

from pipeline.tasks.build import FLOWS, BuildDataset
from pipeline.tasks.dataset import BuildBatches, Cleanup, MergeBatches, ProcessBatch, SplitDataset
from pipeline.tasks.operations import WATCH  # noqa: F401 - registers the run records and terminal progress

__all__ = ["FLOWS", "BuildBatches", "BuildDataset", "Cleanup", "MergeBatches", "ProcessBatch", "SplitDataset"]
