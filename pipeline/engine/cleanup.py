"""Removing the intermediates once the split has consumed them (Cleanup, ``--cleanup``).

Only what the pipeline's own records name goes: the merged files the merge record lists,
and the batch files and records of the plan (and, in the output folder's own
``intermediate/``, those of an earlier batch layout). A file someone put in these folders,
or in a shared ``intermediate_dir``, stays; so do a ``command``'s per-file results (its product).
"""

from __future__ import annotations

from pathlib import Path

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
    return [path for record in sorted(records) for path in (record.with_suffix(".frames"), record) if path.exists()]


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
    return read_record(plan.layout.root, MERGE) is not None or bool(batch_files(plan))


def remove_intermediates(plan: Plan) -> int:
    """Remove the merge record and manifest and the batches once ``final/`` is complete and verified; bytes freed.

    The intermediates are what would repair a damaged ``final/``: they stay until it checks out.
    """
    root = plan.layout.root
    if not is_complete(root, SPLIT, plan.split_fingerprint):
        raise PipelineError(f"{plan.layout.final} is missing or stale: run BuildDataset before Cleanup")
    problems = damaged(root, read_record(root, SPLIT))
    if problems:
        raise PipelineError(f"final outputs are damaged ({'; '.join(problems.values())}): "
                            "run BuildDataset before Cleanup")
    return remove_record(root, MERGE) + remove_batches(plan)
