"""Removing intermediates a later stage has consumed: per-file outputs after the merge, all of them after the split.

Only what the pipeline's own records name goes: the merged files the merge record lists,
the batch files and records of the plan (and, in the output folder's own ``intermediate/``,
those of an earlier batch layout), and the per-file outputs of the planned input files.
A file someone put in these folders, or in a shared ``intermediate_dir``, stays.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.engine.batches import META
from pipeline.engine.merge import MERGE
from pipeline.engine.plan import Plan
from pipeline.engine.records import damaged, is_complete, read_record, remove_outputs, remove_record
from pipeline.engine.split import SPLIT
from pipeline.errors import PipelineError


def batch_files(plan: Plan) -> list[Path]:
    """Batch files and records of the plan that exist; in ``<output>/intermediate/``, earlier layouts' too."""
    layout = plan.layout
    records = {layout.batch_record(b.index) for b in plan.batches}
    if not layout.intermediate_dir:
        records |= set(layout.intermediate.glob("batch_[0-9][0-9][0-9][0-9].json"))
    return [path for record in sorted(records) for path in (record.with_suffix(".npz"), record) if path.exists()]


def file_outputs(plan: Plan) -> list[Path]:
    """Per-file outputs of the planned input files, with the blobs each one lists."""
    layout, paths = plan.layout, []
    for file in (f for batch in plan.batches for f in batch.files):
        output = layout.file_output(file.relative)
        try:
            with np.load(output, allow_pickle=False) as data:
                blobs = json.loads(str(data[META])).get("blobs", {})
        except (OSError, ValueError, KeyError):
            continue
        paths += [output, *(layout.file_blob(file.relative, blob) for blob in blobs)]
    return paths


def file_outputs_left(plan: Plan) -> bool:
    """Whether a per-file output of a planned input file is still there (stops at the first)."""
    return any(plan.layout.file_output(f.relative).exists() for batch in plan.batches for f in batch.files)


def remove_file_outputs(plan: Plan) -> int:
    """Remove the per-file outputs, which the batches replace once merged; bytes freed."""
    return _remove(plan, file_outputs(plan))


def _remove(plan: Plan, paths: list[Path]) -> int:
    """Remove ``paths`` (below the output folder or the batch folder); bytes freed."""
    layout = plan.layout
    roots = [layout.intermediate_dir] if layout.intermediate_dir else []
    freed = 0
    for root in [*roots, layout.root]:
        inside = [p for p in paths if root in p.parents]
        paths = [p for p in paths if p not in inside]
        freed += remove_outputs(root, [str(p.relative_to(root)) for p in inside])
    return freed


def remove_batches(plan: Plan) -> int:
    """Remove the batch files and records the merge read (records first); bytes freed."""
    files = batch_files(plan)
    records = [p for p in files if p.suffix == ".json"]
    return _remove(plan, records) + _remove(plan, [p for p in files if p not in records])


def batches_left(plan: Plan) -> bool:
    """Whether a batch file or record of the plan is still there."""
    layout = plan.layout
    return any(layout.batch(b.index).exists() or layout.batch_record(b.index).exists() for b in plan.batches)


def intermediates_left(plan: Plan) -> bool:
    """Whether anything :func:`remove_intermediates` removes is still there."""
    return read_record(plan.layout.root, MERGE) is not None or bool(batch_files(plan)) or bool(file_outputs(plan))


def remove_intermediates(plan: Plan) -> int:
    """Remove merged files, batches and per-file outputs once ``final/`` is complete and verified; bytes freed.

    The intermediates are what would repair a damaged ``final/``: they stay until it checks out.
    """
    root = plan.layout.root
    if not is_complete(root, SPLIT, plan.split_fingerprint):
        raise PipelineError(f"{plan.layout.final} is missing or stale: run BuildDataset before Cleanup")
    problems = damaged(root, read_record(root, SPLIT))
    if problems:
        raise PipelineError(f"final outputs are damaged ({'; '.join(problems.values())}): "
                            "run BuildDataset before Cleanup")
    return remove_record(root, MERGE) + remove_batches(plan) + remove_file_outputs(plan)
