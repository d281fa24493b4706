"""What is up to date, stale, missing or damaged for a recipe, read from records without running anything."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

from pipeline.engine import frames
from pipeline.engine.batches import batch_is_complete, verify_batch
from pipeline.engine.merge import MERGE
from pipeline.engine.plan import Plan
from pipeline.engine.records import (
    damaged,
    intact,
    mark_damaged,
    read_record,
)
from pipeline.engine.split import SPLIT
from pipeline.engine.storage import read_json


def _state(complete: bool, record: Any) -> str:
    if complete:
        return "up to date"
    return "stale" if record else "missing"


def _stage_state(plan: Plan, stage: str, fingerprint: str, verify: bool) -> tuple[str, dict[str, str]]:
    """State of a recorded stage, and the outputs that are damaged (missing, resized, changed).

    The cheap check (sizes, and checksums of files written to since) runs always; ``verify``
    reads every checksum. A damaged stage's record is marked so the next build redoes it alone.
    """
    root = plan.layout.root
    record = read_record(root, stage)
    if record is None or record.fingerprint != fingerprint:
        return _state(False, record), {}
    if verify:
        problems = damaged(root, record)
    else:
        problems = damaged(root, record, [n for n, o in record.outputs.items() if not intact(root / n, o)])
    if problems:
        mark_damaged(root, record, problems)
    return ("damaged" if problems else "up to date"), problems


def _frames_kept(path: Path) -> int | None:
    """Whole frames of batch file ``path`` while it is being written (what an interrupted batch keeps), or None."""
    try:
        with open(frames.partial_path(path), "rb") as handle:
            return len(frames.scan(handle)[0])
    except OSError:
        return None


def dataset_status(plan: Plan, verify: bool = False) -> dict[str, Any]:
    """State of each stage: per batch, merged and final (``up to date`` / ``stale`` / ``missing``).

    With ``verify``, every checksum is read as well: a stage whose outputs differ from its
    record is ``damaged``, and ``damage`` says which file and how.
    """
    layout = plan.layout
    batches, damage = {}, []
    for batch in plan.batches:
        state = _state(batch_is_complete(plan, batch), read_json(layout.batch_record(batch.index)))
        problem = verify_batch(plan, batch) if verify and state == "up to date" else None
        batches[batch.index] = "damaged" if problem else state
        damage += [problem] if problem else []
    partial = {batch.index: kept for batch in plan.batches if batches[batch.index] != "up to date"
               and (kept := _frames_kept(layout.batch(batch.index))) is not None}
    present = {path.name for path in layout.intermediate.glob("batch_*.json")}
    orphans = len(present - {layout.batch_record(b.index).name for b in plan.batches})
    stages = {}
    for name, stage, fingerprint in (("merged", MERGE, plan.merge_fingerprint),
                                     ("final", SPLIT, plan.split_fingerprint)):
        stages[name], problems = _stage_state(plan, stage, fingerprint, verify)
        damage += problems.values()
    return {
        "dataset": plan.recipe.name,
        "files": plan.file_count,
        "batches": dict(collections.Counter(batches.values())),
        "batch_states": batches,
        "orphan_batches": orphans,
        "partial_batches": partial,
        **stages,
        "verified": verify,
        "damage": damage,
    }


def status_report(status: dict[str, Any]) -> str:
    """A few human lines: counts per state, the batches that need work, merged and final (when given), damage."""
    counts = ", ".join(f"{n} {state}" for state, n in sorted(status["batches"].items()))
    todo = [str(i) for i, state in status["batch_states"].items() if state != "up to date"]
    lines = [
        f"dataset {status['dataset']}: {status['files']} input files in {len(status['batch_states'])} batches",
        f"batches: {counts or 'none'}" + (f" (to build: {', '.join(todo[:20])}{' …' if len(todo) > 20 else ''})"
                                          if todo else ""),
        *(f"{stage}: {status[stage]}" for stage in ("merged", "final") if stage in status),
    ]
    for index, kept in status.get("partial_batches", {}).items():
        lines.append(f"batch {index} is partly written: {kept} files kept, the next run goes on from there")
    if status["orphan_batches"]:
        lines.append(f"{status['orphan_batches']} batch files belong to no current batch (left by an earlier layout)")
    lines += [f"damaged: {problem}" for problem in status.get("damage", [])]
    if status.get("damage"):
        lines.append("run BuildDataset to rebuild what is damaged (and only that)")
    elif status.get("verified"):
        lines.append("every checksum verified")
    return "\n".join(lines)

