"""Errors that say why: the top failure reasons when no rows result, and empty splits named before writing."""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from pipeline.engine.failures import describe
from pipeline.engine.layout import SPLITS
from pipeline.engine.plan import Plan
from pipeline.errors import PipelineError

TOP_REASONS = 5


class EmptySplitError(PipelineError):
    """The train split would hold no rows."""


def no_rows_message(plan: Plan, records: list[dict[str, Any]], top: int = TOP_REASONS) -> str:
    """Why no rows resulted: the input folder and pattern, then the top failure reasons, each with its first example."""
    recipe = plan.recipe
    where = f"under {recipe.input_dir} matching {recipe.pattern!r}"
    if not plan.file_count:
        return f"no rows: no input files {where}; check [dataset] input_dir and pattern"
    failures = [failure for record in records for failure in record["failures"]]
    failed = sum(record["files_failed"] for record in records)
    head = (f"no rows: all {failed} input files {where} failed" if failed == plan.file_count else
            f"no rows: {failed} of {plan.file_count} input files {where} failed, the others gave no rows")
    if not failures:
        return head + " (nothing was recorded as failing: are the files empty?)"
    reasons = collections.Counter(failure["error"] for failure in failures)
    first: dict[str, dict] = {}
    for failure in failures:
        first.setdefault(failure["error"], failure)
    lines = [f"{head}; top reasons:"]
    lines += [f"  {count} × {reason}, first: {describe(first[reason])}" for reason, count in reasons.most_common(top)]
    if len(reasons) > top:
        lines.append(f"  and {len(reasons) - top} other reasons ({plan.layout.intermediate}/batch_*.json lists all)")
    return "\n".join(lines)


def check_splits(plan: Plan, rows: dict[str, int], warn: Callable[[str], None]) -> None:
    """An empty train split is an error; an empty val or test split (with a fraction above 0) is a warning."""
    settings, total = plan.recipe.split, sum(rows.values())
    for split in SPLITS:
        if rows[split] or not settings[split]:
            continue
        message = (f"split {split!r} of {plan.recipe.name} is empty: its fraction {settings[split]:g} of {total} rows "
                   f"gave none (rows are split by group; seed {settings['seed']}, {plan.recipe.path})")
        if split == "train":
            raise EmptySplitError(message + "; nothing to train on, no final outputs written")
        warn(message)
