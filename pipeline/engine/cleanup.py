"""Removing intermediates a later stage has consumed: the batches after the merge, all of them after the split.

Only what the pipeline wrote goes: the plan's batch files and records, and the output
folder's ``files/``, ``intermediate/`` and ``merged/``. A batch folder outside the output
folder (``intermediate_dir``) loses only the plan's batches; anything else in it stays.
"""

from __future__ import annotations

import contextlib
import shutil

from pipeline.engine.plan import Plan


def remove_batches(plan: Plan) -> None:
    """Remove the plan's batch records and files (what its merge read); ``intermediate/`` too once empty."""
    layout = plan.layout
    for batch in plan.batches:
        layout.batch_record(batch.index).unlink(missing_ok=True)  # first: no record names a file that is gone
        layout.batch(batch.index).unlink(missing_ok=True)
    if not layout.intermediate_dir:
        with contextlib.suppress(OSError):  # not empty: batches of another layout, which the merge did not read
            layout.intermediate.rmdir()


def remove_intermediates(plan: Plan) -> None:
    """Remove per-file outputs, batches and merged arrays (once ``final/`` is written from them)."""
    layout = plan.layout
    shutil.rmtree(layout.files, ignore_errors=True)
    shutil.rmtree(layout.merged, ignore_errors=True)
    if layout.intermediate_dir:
        remove_batches(plan)
    else:
        shutil.rmtree(layout.intermediate, ignore_errors=True)


def batches_left(plan: Plan) -> bool:
    """Whether a batch file or record of the plan is still there."""
    layout = plan.layout
    return any(layout.batch(b.index).exists() or layout.batch_record(b.index).exists() for b in plan.batches)


def intermediates_left(plan: Plan) -> bool:
    """Whether anything :func:`remove_intermediates` removes is still there."""
    layout = plan.layout
    if layout.files.exists() or layout.merged.exists():
        return True
    return batches_left(plan) if layout.intermediate_dir else layout.intermediate.exists()
