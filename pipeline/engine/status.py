"""What is up to date, stale and missing for a recipe, read from records without running anything."""

from __future__ import annotations

import collections
from typing import Any

from pipeline.engine.batches import batch_is_complete
from pipeline.engine.merge import merge_is_complete
from pipeline.engine.plan import Plan
from pipeline.engine.split import split_is_complete
from pipeline.engine.storage import read_json


def _state(complete: bool, record: dict | None) -> str:
    if complete:
        return "up to date"
    return "stale" if record else "missing"


def dataset_status(plan: Plan) -> dict[str, Any]:
    """State of each stage: per batch, merged and final (``up to date`` / ``stale`` / ``missing``)."""
    layout = plan.layout
    batches = {}
    for batch in plan.batches:
        batches[batch.index] = _state(batch_is_complete(plan, batch), read_json(layout.batch_record(batch.index)))
    present = {path.name for path in layout.intermediate.glob("batch_*.json")}
    orphans = len(present - {layout.batch_record(b.index).name for b in plan.batches})
    return {
        "dataset": plan.recipe.name,
        "files": plan.file_count,
        "batches": dict(collections.Counter(batches.values())),
        "batch_states": batches,
        "orphan_batches": orphans,
        "merged": _state(merge_is_complete(plan), read_json(layout.merged_manifest)),
        "final": _state(split_is_complete(plan), read_json(layout.final_manifest)),
    }


def status_report(status: dict[str, Any]) -> str:
    """A few human lines: counts per state, the batches that need work, then merged and final (when given)."""
    counts = ", ".join(f"{n} {state}" for state, n in sorted(status["batches"].items()))
    todo = [str(i) for i, state in status["batch_states"].items() if state != "up to date"]
    lines = [
        f"dataset {status['dataset']}: {status['files']} input files in {len(status['batch_states'])} batches",
        f"batches: {counts or 'none'}" + (f" (to build: {', '.join(todo[:20])}{' …' if len(todo) > 20 else ''})"
                                          if todo else ""),
        *(f"{stage}: {status[stage]}" for stage in ("merged", "final") if stage in status),
    ]
    if status["orphan_batches"]:
        lines.append(f"{status['orphan_batches']} batch files belong to no current batch (left by an earlier layout)")
    return "\n".join(lines)
