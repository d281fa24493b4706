"""Status, Cleanup and the outcome of a build, for every flow: plain functions over a recipe.

The ``Status`` and ``Cleanup`` tasks and the scheduler-free ``python -m pipeline status|cleanup
RECIPE`` call them. Each flow says whether its final outputs are up to date, what its stages'
states are, and which intermediates Cleanup may remove once the final outputs are complete.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.engine.cleanup import batches_left, remove_batches
from pipeline.engine.layout import Layout
from pipeline.engine.merge import MERGE
from pipeline.engine.plan import Plan, plan_for
from pipeline.engine.records import Stage, damaged, is_complete, mark_damaged, read_record, remove_record
from pipeline.engine.report import report_is_complete
from pipeline.engine.split import SPLIT, split_is_complete
from pipeline.engine.status import dataset_status, status_report
from pipeline.engine.storage import read_json
from pipeline.errors import PipelineError
from pipeline.kinds.ptv import TRACKING, recipe_plan
from pipeline.kinds.ptv_engine import chunk_is_complete, tracking_is_complete
from pipeline.recipe import Recipe

UP_TO_DATE, STALE, MISSING = "up to date", "stale", "missing"


class NotBuiltError(PipelineError):
    """Cleanup refused: the final outputs are missing or stale."""


class NoCleanupError(PipelineError):
    """The recipe's flow has nothing Cleanup may remove."""


@dataclass(frozen=True)
class Removable:
    """Intermediates Cleanup may delete: what they are, and how to delete them (returns the bytes freed)."""

    label: str
    remove: Callable[[], int]


@dataclass(frozen=True)
class Status:
    """Human lines per stage, and whether the build is complete (BuildDataset would run nothing)."""

    lines: list[str]
    built: bool


def state(complete: bool, recorded: bool) -> str:
    """``up to date`` when complete, else ``stale`` when something was recorded, else ``missing``."""
    return UP_TO_DATE if complete else STALE if recorded else MISSING


def counts(states: collections.Counter) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(states.items())) or "none"


def summary_is_complete(plan: Plan) -> bool:
    """The "each" flow's ``final/stats.json`` describes the current batches."""
    return (read_json(plan.layout.stats) or {}).get("fingerprint") == plan.merge_fingerprint


# --- files flow: ProcessBatch → MergeBatches → SplitDataset ---------------------------------------------------

def _files_status(recipe: Recipe, verify: bool) -> tuple[bool, list[str]]:
    stages = dataset_status(plan_for(recipe), verify)
    return stages["final"] == UP_TO_DATE, status_report(stages).splitlines()


def _files_intermediates(recipe: Recipe) -> tuple[bool, list[Removable]]:
    plan = plan_for(recipe)
    layout = plan.layout
    complete = split_is_complete(plan)
    removables = []
    if read_record(layout.root, MERGE):
        removables.append(Removable("merged/", lambda: remove_record(layout.root, MERGE)))
    if batches_left(plan):
        removables.append(Removable(f"{_shown(layout, layout.intermediate)}/", lambda: remove_batches(plan)))
    return complete, removables


def _shown(layout: Layout, folder: Path) -> str:
    """``folder`` relative to the output folder when inside it, else in full."""
    return str(folder.relative_to(layout.root)) if layout.root in folder.parents else str(folder)


# --- each flow: ProcessBatch → SummariseFiles (the per-file outputs are the result) ----------------------------

def _each_status(recipe: Recipe, verify: bool) -> tuple[bool, list[str]]:
    plan = plan_for(recipe)
    stages = {key: value for key, value in dataset_status(plan).items() if key not in ("merged", "final")}
    done = summary_is_complete(plan)
    return done, [*status_report(stages).splitlines(),
                  f"summary ({plan.layout.stats.relative_to(plan.layout.root)}): "
                  f"{state(done, plan.layout.stats.is_file())}"]


def _each_intermediates(recipe: Recipe) -> tuple[bool, list[Removable]]:
    plan = plan_for(recipe)
    return summary_is_complete(plan), [Removable("batches (files and records)", lambda: remove_batches(plan))] \
        if batches_left(plan) else []


# --- ticks flow: stage records under records/ticks/ ---------------------------------------------------------

def _ticks_group(stage: str) -> str:
    from pipeline.flows import ticks as ticks_flow  # see _ticks_stages

    if stage == ticks_flow.CHUNKS:
        return "chunks"
    if stage.startswith("ticks/results/"):
        return "results (chunk × universe)"
    return "final (overall)" if stage == "ticks/final" else "universes consolidated"


def _ticks_stages(recipe: Recipe) -> tuple[bool, dict[str, collections.Counter], list[Stage]]:
    from pipeline.flows import ticks as ticks_flow  # here: it loads pyarrow, which other flows never need

    root, stages = recipe.output_dir, ticks_flow.flow_stages(recipe)
    groups: dict[str, collections.Counter] = {name: collections.Counter() for name in (
        "chunks", "results (chunk × universe)", "universes consolidated", "final (overall)")}
    finals_done = True
    for stage in stages:
        complete = is_complete(root, stage.name, stage.fingerprint)
        groups[_ticks_group(stage.name)][state(complete, read_record(root, stage.name) is not None)] += 1
        finals_done &= complete or stage.intermediate
    return finals_done and len(stages) > 1, groups, stages


def _ticks_status(recipe: Recipe, verify: bool) -> tuple[bool, list[str]]:
    built, groups, stages = _ticks_stages(recipe)
    lines = [f"dataset {recipe.name}: ticks flow, {len(stages)} stages"]
    for name, states in groups.items():
        known = states or name == "chunks"
        lines.append(f"{name}: {counts(states) if known else 'known once the input is chunked'}")
    return built, lines


def _ticks_intermediates(recipe: Recipe) -> tuple[bool, list[Removable]]:
    from pipeline.flows import ticks as ticks_flow  # see _ticks_stages

    built, _, stages = _ticks_stages(recipe)
    root = recipe.output_dir
    results = [s.name for s in stages if s.intermediate and s.name != ticks_flow.CHUNKS
               and read_record(root, s.name) is not None]
    if not results:
        return built, []
    return built, [Removable(f"results/ ({len(results)} chunk × universe analyses; the chunks stay: every "
                             "stage's completion is checked against them)",
                             lambda: sum(remove_record(root, name) for name in results))]


def _ticks_finals(recipe: Recipe) -> list[str]:
    from pipeline.flows import ticks as ticks_flow  # see _ticks_stages

    return [s.name for s in ticks_flow.flow_stages(recipe) if not s.intermediate]


# --- ptv flow: PtvChunk → TrackParticles ----------------------------------------------------------------------

def _ptv_status(recipe: Recipe, verify: bool) -> tuple[bool, list[str]]:
    plan = recipe_plan(recipe)
    chunks = collections.Counter(state(chunk_is_complete(plan, chunk), plan.layout.chunk_record(chunk.index).is_file())
                                 for chunk in plan.chunks)
    done = tracking_is_complete(plan)
    tracking = state(done, plan.layout.tracking_record.is_file())
    record = read_record(recipe.output_dir, TRACKING)
    problems = damaged(recipe.output_dir, record) if done and verify else {}
    if problems:  # marked so that the next BuildDataset tracks again
        mark_damaged(recipe.output_dir, record, problems)
        done, tracking = False, "damaged"
    return done, [f"dataset {recipe.name}: ptv flow, {len(plan.frames)} frames in {len(plan.chunks)} chunks",
                  f"chunks: {counts(chunks)}", f"tracking: {tracking}", *(f"damaged: {p}" for p in problems.values())]


def _ptv_intermediates(recipe: Recipe) -> tuple[bool, list[Removable]]:
    raise NoCleanupError(f"{recipe.path}: Cleanup does not apply to flow 'ptv' (kind {recipe.kind.name!r}): tracking "
                    "reads and rewrites the per-frame outputs in place, so every output is final; nothing removed")


FLOWS: dict[str, tuple[Callable, Callable, Callable]] = {
    "files": (_files_status, _files_intermediates, lambda recipe: [SPLIT]),
    "each": (_each_status, _each_intermediates, lambda recipe: []),
    "ticks": (_ticks_status, _ticks_intermediates,
              _ticks_finals),
    "ptv": (_ptv_status, _ptv_intermediates, lambda recipe: []),
}
"""Per flow: its status (final up to date, lines), its intermediates (final complete, removables) and
the stage records of its final outputs, verified before Cleanup removes what would repair them."""


def _flow(recipe: Recipe) -> tuple[Callable, Callable, Callable]:
    try:
        return FLOWS[recipe.kind.flow]
    except KeyError:
        raise PipelineError(f"{recipe.path}: kind {recipe.kind.name!r} has flow {recipe.kind.flow!r}, which Status "
                            f"and Cleanup do not know (known: {', '.join(FLOWS)})") from None


def status(recipe: Recipe, verify: bool = False) -> Status:
    """Each stage's state (up to date / stale / missing, with counts), the report's, and what to run.

    ``verify`` reads every checksum of the files flow (see :func:`engine.status.dataset_status`).
    """
    final_done, lines = _flow(recipe)[0](recipe, verify)
    report = report_is_complete(Layout(recipe.output_dir))
    built = final_done and report
    lines.append(f"report: {UP_TO_DATE if report else 'missing or stale'}")
    lines.append("built: nothing to run" if built else "not built: run BuildDataset to build what is missing or stale")
    return Status(lines, built)


def intermediates(recipe: Recipe) -> tuple[bool, list[Removable]]:
    """Whether the final outputs are complete, and the intermediates Cleanup would remove."""
    return _flow(recipe)[1](recipe)


def cleanup(recipe: Recipe) -> list[tuple[str, int]]:
    """Remove the flow's intermediates once its final outputs are complete and verified: (what, bytes freed) each."""
    complete, removables = intermediates(recipe)
    if not complete:
        raise NotBuiltError(f"{Layout(recipe.output_dir).final} is missing or stale: run BuildDataset before Cleanup")
    root = recipe.output_dir
    finals = [read_record(root, stage) for stage in _flow(recipe)[2](recipe)]
    problems = [problem for record in finals for problem in damaged(root, record).values()]
    if problems:  # the intermediates are what would repair them
        raise NotBuiltError(f"final outputs are damaged ({'; '.join(problems)}): run BuildDataset before Cleanup")
    return [(item.label, item.remove()) for item in removables]


def cleanup_lines(removed: list[tuple[str, int]]) -> list[str]:
    """What Cleanup says: one line per removed item, then the total."""
    if not removed:
        return ["nothing to remove: the final outputs are complete and no intermediates are left"]
    total = sum(size for _, size in removed)
    return [*(f"removed {label}: {size} bytes" for label, size in removed),
            f"freed {total} bytes ({total / 2**20:.1f} MiB) in all"]


def skipped_inputs(recipe: Recipe) -> int:
    """How many input files (ptv: frames) of the complete build failed and were left out."""
    if recipe.kind.flow == "ptv":
        return int((read_json(recipe_plan(recipe).layout.summary) or {}).get("frames_failed") or 0)
    return int(((read_json(Layout(recipe.output_dir).stats) or {}).get("files") or {}).get("failed") or 0)
