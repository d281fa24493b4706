"""The run report: ``report/report.md`` with SVG plots of timing, throughput, failures, splits, labels, memory.

Facts come from files the run leaves: batch records (``intermediate/batch_NNNN.json``), run
records (``monitor/``), ``final/stats.json`` and the final label archives, read in chunks.
The plots are drawn by :mod:`pipeline.engine.charts` (no plotting library).
``report/report.json`` holds the facts and is written last: it marks the report complete for
the final outputs it describes, and a plot is redrawn only when its facts change.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.engine.charts import COLORS, Panel, render
from pipeline.engine.layout import SPLITS, Layout
from pipeline.engine.progress import read_records
from pipeline.engine.records import code_digest
from pipeline.engine.storage import (
    atomic_open,
    digest,
    iter_npz_member,
    npz_members,
    read_json,
    write_json,
)

logger = logging.getLogger("luigi-interface")
MAX_CLASSES = 64
"""A label with more distinct values than this is shown as a histogram, not per class."""
BINS = 40


def final_fingerprint(layout: Layout) -> str:
    """What the report describes: the final manifest (or stats) as they are now."""
    return digest([read_json(layout.final_manifest), read_json(layout.stats)])


def report_is_complete(layout: Layout) -> bool:
    """The report exists and describes the current final outputs."""
    facts = read_json(layout.report / "report.json")
    return bool(facts) and facts.get("fingerprint") == final_fingerprint(layout) and (
        layout.report / "report.md").is_file()


def batch_facts(layout: Layout) -> list[dict[str, Any]]:
    """Per batch: files, records, rows, failures from its record; duration and times from its run record."""
    runs = {int(r["params"]["index"]): r for r in read_records(layout.monitor)
            if r.get("family") == "ProcessBatch" and r["state"] == "done"}
    facts = []
    for path in sorted(layout.intermediate.glob("batch_*.json")) if layout.intermediate.is_dir() else ():
        record = (read_json(path) or {}).get("facts")  # a stage record (engine/records.py)
        if not record:
            continue
        index = int(path.stem.rpartition("_")[2])
        run = runs.get(index, {})
        facts.append({"batch": index, "files": record["files"], "records": record["records"], "rows": record["rows"],
                      "failures": len(record["failures"]), "seconds": run.get("seconds"),
                      "started": run.get("started"), "finished": run.get("finished"),
                      "peak_rss_mb": run.get("peak_rss_mb")})
    return facts


def stage_facts(layout: Layout) -> list[dict[str, Any]]:
    """Per task family (stage): tasks run, total seconds, time waiting for resources, peak RSS."""
    stages: dict[str, dict[str, Any]] = {}
    for run in read_records(layout.monitor):
        if run["state"] != "done":
            continue
        stage = stages.setdefault(run["family"], {"stage": run["family"], "tasks": 0, "seconds": 0.0,
                                                  "waited_s": 0.0, "peak_rss_mb": 0.0})
        stage["tasks"] += 1
        stage["seconds"] += run["seconds"] or 0.0
        stage["waited_s"] += run["waited_s"] or 0.0
        stage["peak_rss_mb"] = max(stage["peak_rss_mb"], run["peak_rss_mb"] or 0.0)
    return sorted(stages.values(), key=lambda s: s["stage"])


def _finite(chunk: np.ndarray) -> np.ndarray:
    """The values of a label chunk that are numbers (not NaN nor infinite)."""
    return chunk[np.isfinite(chunk)] if chunk.dtype.kind in "fc" else chunk


def _label_pass(paths: list[Path], name: str, chunk_rows: int) -> dict[str, Any]:
    """Counts per class of label ``name`` in each split, or histograms when it has many values.

    Values that are not finite (NaN, inf) are counted apart, per split (``not_finite``, when any).
    """
    counts = [Counter() for _ in paths]
    not_finite = [0 for _ in paths]
    low, high, many = np.inf, -np.inf, False
    for index, path in enumerate(paths):
        for chunk in iter_npz_member(path, name, chunk_rows):
            finite = _finite(chunk)
            not_finite[index] += len(chunk) - len(finite)
            if not len(finite):
                continue
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
            if not many:
                values, found = np.unique(finite, return_counts=True)
                counts[index].update(dict(zip(values.tolist(), found.tolist(), strict=True)))
                many = len(set().union(*counts)) > MAX_CLASSES
    apart = {"not_finite": not_finite} if any(not_finite) else {}
    if not many:
        classes = sorted(set().union(*counts))
        return {"classes": classes, "counts": [[c[v] for v in classes] for c in counts], **apart}
    edges = np.linspace(low, high if high > low else low + 1, BINS + 1)
    histograms = [np.zeros(BINS, dtype=np.int64) for _ in paths]
    for index, path in enumerate(paths):
        for chunk in iter_npz_member(path, name, chunk_rows):
            histograms[index] += np.histogram(_finite(chunk), edges)[0]
    return {"edges": edges.tolist(), "counts": [h.tolist() for h in histograms], **apart}


def label_facts(layout: Layout, chunk_rows: int = 1 << 20) -> dict[str, dict[str, Any]]:
    """Distribution of every one-value-per-row label head over the splits, streamed."""
    paths = [layout.final / f"labels_{split}.npz" for split in SPLITS]
    if not all(path.is_file() for path in paths):
        return {}
    return {name: _label_pass(paths, name, chunk_rows)
            for name, (shape, _) in sorted(npz_members(paths[0]).items()) if len(shape) == 1}


def _draw_batches(timed: list[dict[str, Any]]) -> str:
    durations = Panel("Duration per batch", xlabel="batch", ylabel="seconds", integer_x=True)
    durations.bars([b["batch"] for b in timed], [b["seconds"] for b in timed])
    start = min(b["started"] for b in timed)
    ordered = sorted(timed, key=lambda b: b["finished"])
    throughput = Panel("Throughput over time", xlabel="seconds since the first batch started", ylabel="records / s")
    throughput.line([b["finished"] - start for b in ordered],
                    [b["records"] / max(b["seconds"], 1e-9) for b in ordered], color=COLORS[2])
    return render([durations, throughput], 990, 340)


def _horizontal(panel: Panel, names: list[str], values: list[float], color: str) -> str:
    """A chart of one bar per name, as tall as its names need."""
    if names:
        panel.hbars(names, values, color=color)
    return render([panel], 630, max(290, 80 + 22 * len(names)))


def _draw_failures(reasons: dict[str, int]) -> str:
    panel = Panel("Failures by reason", xlabel="failures", message="" if reasons else "no failures")
    return _horizontal(panel, list(reasons), list(reasons.values()), COLORS[3])


def _draw_splits(rows: dict[str, int]) -> str:
    panel = Panel("Split sizes", ylabel="rows")
    panel.bars(range(len(SPLITS)), [rows.get(s, 0) for s in SPLITS], color=COLORS[:len(SPLITS)])
    panel.xticks = list(enumerate(SPLITS))
    return render([panel], 540, 290)


def _draw_label(label: tuple[str, dict[str, Any]]) -> str:
    name, dist = label
    left_out = sum(dist.get("not_finite", ()))
    panel = Panel(f"Label '{name}' by split" + (f" ({left_out:,} values not finite left out)" if left_out else ""),
                  ylabel="fraction of rows")
    few = "classes" in dist and len(dist["classes"]) <= 16
    for offset, (split, counts, color) in enumerate(zip(SPLITS, dist["counts"], COLORS, strict=False)):
        share = (np.array(counts) / max(sum(counts), 1)).tolist()
        if few:
            panel.bars([i + (offset - 1) * 0.27 for i in range(len(counts))], share, width=0.27, color=color,
                       label=split)
        elif "classes" in dist:
            panel.line(dist["classes"], share, color=color, label=split)
        else:
            panel.stairs(share, dist["edges"], color=color, label=split)
    if few:
        panel.xticks = [(i, f"{c:g}") for i, c in enumerate(dist["classes"])]
    return render([panel], 720, 290)


def _draw_memory(peaks: list[tuple[str, float]]) -> str:
    panel = Panel("Peak memory per stage", xlabel="peak RSS of one task, MiB")
    return _horizontal(panel, [stage for stage, _ in peaks], [peak for _, peak in peaks], COLORS[4])


def _plot_list(facts: dict[str, Any]) -> list[tuple[str, str, Any, Callable[[Any], str]]]:
    """The plots the facts allow: (file name, title, the facts it shows, draw(those facts) → SVG)."""
    stats = facts["stats"] or {}
    timed = [b for b in facts["batches"] if b["seconds"] is not None]
    listed = [("batches.svg", "Batches: duration and throughput", timed, _draw_batches)] if timed else []
    reasons = (stats.get("failures") or {}).get("by_reason") or {}
    listed.append(("failures.svg", "Failures by reason", reasons, _draw_failures))
    if stats.get("rows"):
        listed.append(("splits.svg", "Split sizes", stats["rows"], _draw_splits))
    listed += [(f"label_{name}.svg", f"Label '{name}'", (name, dist), _draw_label)
               for name, dist in facts["labels"].items()]
    if facts["stages"]:
        peaks = [(s["stage"], s["peak_rss_mb"]) for s in facts["stages"]]
        listed.append(("memory.svg", "Peak memory per stage", peaks, _draw_memory))
    return listed


def _plots(layout: Layout, facts: dict[str, Any], earlier: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Draw the plots; return them, {title: file name}, and each one's digest of facts and code, {file name: digest}.

    Only a plot whose digest differs from the last report's (``earlier``) or whose file is
    missing is drawn. Plots the last report listed and this one does not (another label,
    the PNGs of earlier versions) are removed.
    """
    listed, code = _plot_list(facts), code_digest(__name__, render)
    digests = {name: digest([code, shown]) for name, _, shown, _ in listed}
    drawn = earlier.get("plot_digests") or {}
    for name, _, shown, draw in listed:
        if drawn.get(name) != digests[name] or not (layout.report / name).is_file():
            with atomic_open(layout.report / name) as handle:
                handle.write(draw(shown).encode())
    for name in set(drawn) - set(digests):
        if Path(name).name == name:  # a plain file name of report/, as this module writes them
            (layout.report / name).unlink(missing_ok=True)
    return {title: name for name, title, *_ in listed}, digests


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        return "" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)

    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
            *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows), ""]


def _markdown(facts: dict[str, Any], plots: dict[str, str]) -> str:
    stats = facts["stats"] or {}
    lines = [f"# Run report: {stats.get('dataset', facts['dataset'])}", ""]
    summary = [[f"{section} {what}", count] for section in ("files", "records")
               for what, count in (stats.get(section) or {}).items()]
    for section in ("rows", "groups"):
        counts = stats.get(section)
        summary += ([[f"{section} in {s}", counts[s]] for s in SPLITS if s in counts] if isinstance(counts, dict)
                    else [[section, counts]] if counts is not None else [])
    if summary:
        lines += ["## Summary", "", *_table(["what", "count"], summary)]
    for title, name in plots.items():
        lines += [f"## {title}", "", f"![{title}]({name})", ""]
    batches = facts["batches"]
    if batches:
        lines += ["## Batches", "", "Times are those of each batch's last run.", "",
                  *_table(["batch", "files", "records", "rows", "failures", "seconds", "records/s", "peak RSS MiB"],
                          [[b["batch"], b["files"], b["records"], b["rows"], b["failures"], b["seconds"],
                            b["records"] / b["seconds"] if b["seconds"] else None, b["peak_rss_mb"]]
                           for b in batches])]
    if facts["stages"]:
        lines += ["## Stages", "", *_table(["stage", "tasks", "seconds", "waited for resources (s)", "peak RSS MiB"],
                                           [[s["stage"], s["tasks"], s["seconds"], s["waited_s"], s["peak_rss_mb"]]
                                            for s in facts["stages"]])]
    failures = (stats.get("failures") or {}).get("records") or []
    if failures:
        lines += ["## Failures", "", f"{len(failures)} in all; the first {min(len(failures), 20)}:", "",
                  *_table(["file", "line", "error", "message"],
                          [[f["file"], f["line"], f["error"], f["message"]] for f in failures[:20]])]
    return "\n".join(lines)


def write_report(layout: Layout, dataset: str) -> Path:
    """Write ``report/report.md``, its plots and ``report/report.json``; return the report's path."""
    facts = {"dataset": dataset, "fingerprint": final_fingerprint(layout), "stats": read_json(layout.stats),
             "batches": batch_facts(layout), "stages": stage_facts(layout), "labels": label_facts(layout)}
    plots, digests = _plots(layout, facts, read_json(layout.report / "report.json") or {})
    path = layout.report / "report.md"
    with atomic_open(path) as handle:
        handle.write(_markdown(facts, plots).encode())
    write_json(layout.report / "report.json", {**facts, "plots": plots, "plot_digests": digests})
    return path
