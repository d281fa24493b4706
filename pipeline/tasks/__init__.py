"""The Luigi tasks users run: ``luigi --module pipeline <Task> --recipe PATH``."""

from pipeline.tasks.build import FLOWS, BuildDataset
from pipeline.tasks.dataset import BuildBatches, Cleanup, MergeBatches, ProcessBatch, SplitDataset
from pipeline.tasks.ticks import AnalyseChunk, BuildTicks, ChunkTicks, ConsolidateUniverse

__all__ = ["FLOWS", "BuildBatches", "BuildDataset", "Cleanup", "MergeBatches", "ProcessBatch", "SplitDataset",
           "AnalyseChunk", "BuildTicks", "ChunkTicks", "ConsolidateUniverse"]
