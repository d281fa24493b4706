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
from pipeline.tasks.operations import WATCH  # noqa: F401 - registers the run records and terminal progress
from pipeline.tasks.ptv import PtvChunk, TrackParticles
from pipeline.tasks.ticks import AnalyseChunk, BuildTicks, ChunkTicks, ConsolidateUniverse

__all__ = [
    "FLOWS",
    "AnalyseChunk",
    "BuildTicks",
    "ChunkTicks",
    "ConsolidateUniverse",
    "BuildBatches",
    "BuildDataset",
    "Cleanup",
    "MergeBatches",
    "ProcessBatch",
    "PtvChunk",
    "SplitDataset",
    "Status",
    "SummariseFiles",
    "TrackParticles",
]
