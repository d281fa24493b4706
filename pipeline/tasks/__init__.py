"""The Luigi tasks users run: ``luigi --module pipeline <Task> --recipe PATH``."""

from pipeline.tasks.build import FLOWS, BuildDataset
from pipeline.tasks.dataset import (
    BuildBatches,
    Cleanup,
    MergeBatches,
    ProcessBatch,
    SplitDataset,
    Status,
    SummariseFiles,
)

__all__ = [
    "FLOWS",
    "BuildBatches",
    "BuildDataset",
    "Cleanup",
    "MergeBatches",
    "ProcessBatch",
    "SplitDataset",
    "Status",
    "SummariseFiles",
]
