"""Writing benchmark results into docs/performance.md between its results markers."""

from __future__ import annotations

from pathlib import Path

START, END = "<!-- results:start -->", "<!-- results:end -->"


def _mark(verdict: dict) -> str:
    return {True: "**met**", False: "**not met**", None: "not measured in this mode"}[verdict["met"]]


def _value(value: float | None, fmt: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{fmt}}{unit}"


def _target(label: str, verdict: dict, fmt: str, unit: str = "", scale: float = 1, at_least: bool = False) -> list[str]:
    """The table row of a target, then one row per corpus when it was measured on each."""
    goal = f"{'≥' if at_least else '≤'} {verdict['goal'] * scale:g}{unit}"
    rows = [f"| {label} | {goal} | {_value(verdict['value'] and verdict['value'] * scale, fmt, unit)} "
            f"| {_mark(verdict)} |"]
    rows += [f"| ↳ {each['corpus']} | {goal} | {each['value'] * scale:{fmt}}{unit} | {_mark(each)} |"
             for each in verdict.get("each", [])]
    return rows


def _throughput(t: dict) -> list[str]:
    """The section of one throughput corpus: sizes, bytes at rest and written, then the runs."""
    lines = [
        f"### Throughput: {t['corpus']} ({t['records']:,} records, {t['rows']:,} rows; "
        f"{t['input_mb']:.1f} MiB in, {t['rows_mb']:.0f} MiB of final arrays; {t['tasks']} Luigi tasks)",
        "",
        f"Bytes at rest under the output folder (run records left out) / bytes of `final/`: "
        f"{t['at_rest_ratio']:.2f} ({t['at_rest_mb']:.1f} / {t['final_mb']:.1f} MiB, intermediates kept, "
        f"batches compressed: zstd, the default). Bytes written by one build / bytes of `final/`: "
        f"{t['written_ratio']:.2f} "
        f"({t['written_mb']:.1f} MiB passed to `write()`; {t['written_device_mb']:.1f} MiB for the disk, "
        f"{t['written_device_ratio']:.2f}x; medians of its builds).",
        "",
        "Medians of the runs listed; runs interleaved pipeline, baseline, per worker count. "
        f"Baseline wrote the same final arrays as the pipeline: {'yes' if t['same_arrays'] else 'NO'}.",
        "",
        "| workers | pipeline s | baseline s | floor s | overhead ratio | CPU ratio | pipeline / floor | files/s "
        "| records/s | rows/s | baseline files/s | pipeline runs s | baseline runs s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for workers, w in sorted(t["workers"].items()):
        lines.append(
            f"| {workers} | {w['pipeline_s']:.2f} | {w['baseline_s']:.2f} | {w['floor_s']:.2f} "
            f"| {w['overhead_ratio']:.2f} | {w['cpu_ratio']:.2f} | {w['floor_ratio']:.2f} | {w['files_per_s']:,.0f} "
            f"| {w['records_per_s']:,.0f} | {w['rows_per_s']:,.0f} | {w['baseline_files_per_s']:,.0f} "
            f"| {', '.join(f'{s:.2f}' for s in w['runs']['pipeline'])} "
            f"| {', '.join(f'{s:.2f}' for s in w['runs']['baseline'])} |")
    return lines + [""]


def render(r: dict) -> str:
    """The results block: machine, command, targets, then every measured figure."""
    m, mem, enc, v, none = r["machine"], r["memory"], r["encoder"], r["targets"], r["uncompressed"]
    default = r["throughput"][0]
    lines = [
        f"Recorded by `{r['command']}` ({r['mode']} mode, kind `{r['kind']}`, "
        f"{r['seconds'] / 60:.1f} min in all).",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gb']} GiB memory, {m['system']}; "
        f"Python {m['python']}, luigi {m['luigi']}, numpy {m['numpy']}; load average at start "
        f"{', '.join(map(str, m['load_average_at_start']))} (the machine is shared).",
        "",
        "### Targets",
        "",
        "| target | goal | measured | status |",
        "|---|---|---|---|",
        *_target("overhead ratio pipeline / baseline (worse of the corpora, of 1 and 2 workers)",
                 v["overhead_ratio"], ".2f"),
        *_target("bytes at rest under the output folder / bytes of `final/`, intermediates kept, "
                 "batches compressed (zstd, the default)", v["at_rest_ratio"], ".2f"),
        f"| ↳ {none['corpus']}, `[batch] compression = \"none\"` | for comparison "
        f"| {none['at_rest_ratio']:.2f} | |",
        *_target("bytes written by a build / bytes of `final/`", v["written_ratio"], ".2f"),
        *_target("no-op re-run of 100,000 files", v["noop_seconds_100k"], ".2f", " s"),
        *_target("Luigi tasks for 100,000 files", v["tasks_100k"], "d"),
        *_target(f"peak RSS growth of merge and split, {mem['from_scale']}x → {mem['to_scale']}x data",
                 v["rss_growth"], "+.1f", "%", 100),
        *_target("trmph encoder / per-position Python", v["encoder_speedup"], ".1f", "x", at_least=True),
        "",
    ]
    for t in r["throughput"]:
        lines += _throughput(t)
    lines += [f"### Batches compressed or not ({default['corpus']}, 2 workers)", "",
              "| `[batch] compression` | build s | at rest MiB | at rest / final | written MiB | written / final "
              "| for the disk MiB |", "|---|---|---|---|---|---|---|"]
    two = {int(n): w for n, w in default["workers"].items()}[2]  # int keys, or str ones read back from JSON
    for name, c, seconds in (("zstd (default; medians)", default, two["pipeline_s"]),
                             ("none (one build)", none, none["seconds"])):
        lines.append(f"| {name} | {seconds:.2f} | {c['at_rest_mb']:.1f} | {c['at_rest_ratio']:.2f} "
                     f"| {c['written_mb']:.1f} | {c['written_ratio']:.2f} | {c['written_device_mb']:.1f} |")
    lines += ["", "### No-op re-run (everything complete, 1 worker) and task counts", "",
              "| input files | full build s (2 workers) | tasks scheduled by the build | no-op s (median) "
              "| no-op CPU s | no-op runs s | tasks in the no-op run | tasks run again |",
              "|---|---|---|---|---|---|---|---|"]
    for n in r["noop"]:
        lines.append(f"| {n['files']:,} | {n['build_s']:.1f} | {n['build_tasks']} | {n['noop_s']:.2f} "
                     f"| {n['noop_cpu_s']:.2f} "
                     f"| {', '.join(f'{s:.2f}' for s in n['noop_runs'])} | {n['noop_tasks']} | {n['noop_ran']} |")
    lines += ["", "### Peak RSS of MergeBatches and SplitDataset run alone "
              f"(1 worker, chunk_mb = {mem['chunk_mb']})",
              "", "| data | input files | intermediate MiB | merge peak MiB | split peak MiB |",
              "|---|---|---|---|---|"]
    for scale, s in sorted(mem["scales"].items(), key=lambda item: int(item[0])):
        lines.append(f"| {scale}x | {s['files']:,} | {s['data_mb']:.1f} | {s['merge_peak_mb']:.1f} "
                     f"| {s['split_peak_mb']:.1f} |")
    lines += ["", f"Growth from {mem['from_scale']}x to {mem['to_scale']}x: merge "
              f"{100 * mem['merge_growth']:+.1f}%, split {100 * mem['split_growth']:+.1f}%.", "",
              f"### trmph encoder (one core, {enc['games']:,} random games of {enc['board_size']}x{enc['board_size']}, "
              f"{enc['positions']:,} positions)", "",
              "| encoder | positions/s |", "|---|---|",
              f"| `trmph.read` (vectorised) | {enc['vectorised_positions_per_s']:,.0f} |",
              f"| per-position Python (`benchmarks/encoder.py`) | {enc['naive_positions_per_s']:,.0f} |",
              f"| output floor: allocating and filling the boards alone | {enc['output_floor_positions_per_s']:,.0f} |",
              "",
              f"Speed-up {enc['speedup']:.1f}x; the output floor caps any encoder of these boards at "
              f"{enc['speedup_ceiling']:.0f}x the per-position version on this machine."]
    return "\n".join(lines)


def write(doc: Path, results: dict) -> None:
    """Replace the results block of ``doc`` (created with just the block if missing)."""
    text = doc.read_text() if doc.exists() else f"# Performance\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(f"{head}{START}\n{render(results)}\n{END}{tail}")
