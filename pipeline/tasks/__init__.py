"""The Luigi tasks users run: ``luigi --module pipeline <Task> --recipe PATH``."""

from pipeline.tasks.dataset import (
    BuildBatches,
    BuildDataset,
    Cleanup,
    MergeBatches,
    ProcessBatch,
    SplitDataset,
)

__all__ = ["BuildBatches", "BuildDataset", "Cleanup", "MergeBatches", "ProcessBatch", "SplitDataset"]
