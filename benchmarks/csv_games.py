"""Benchmark of the csv_games kind: wall time and peak memory of each stage on synthetic Splendor logs.

Usage: ``python benchmarks/csv_games.py [--files 726 7259] [--workers 2] [--end-to-end]``

For each size it generates the game logs once (``pipeline.synthetic.csv_games``, kept
under ``--work``), then runs the stages as separate ``luigi`` processes from a clean
output folder (BuildBatches, MergeBatches, SplitDataset) while sampling the resident
memory of the luigi process tree with psutil, its CPU time (and the machine's 1-minute load average
after each, since a shared machine skews wall times); ``--end-to-end`` also times one
``BuildDataset`` run from scratch. Results go to ``<work>/results.json`` and a Markdown
table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from measure import tree_rss

from pipeline.synthetic.csv_games import write_corpus

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("BuildBatches", "MergeBatches", "SplitDataset")


def run_luigi(task: str, recipe: Path, workers: int, log: Path) -> dict[str, float]:
    """Run one luigi task as a subprocess: wall time, CPU time and peak RSS of its process tree.

    CPU time (user + system of luigi and every worker it forked, from ``wait4``) does not
    grow when other jobs share the machine; wall time does. ``peak_rss_mib`` is the sampled
    sum over the process tree; ``max_rss_mib`` the exact peak of its largest single process.
    """
    command = [str(Path(sys.executable).with_name("luigi")), "--module", "pipeline", task, "--recipe", str(recipe),
               "--local-scheduler", "--workers", str(workers)]
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(ROOT / "luigi.cfg")}
    started = time.perf_counter()
    with open(log, "wb") as output:
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    peak, stop = [0], threading.Event()

    def sample() -> None:
        process = psutil.Process(child.pid)
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], tree_rss(process))
            except psutil.Error:
                return
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    if child.returncode:
        raise SystemExit(f"{task} failed (exit {child.returncode}), see {log}")
    return {"seconds": round(wall, 1), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mib": round(peak[0] / 2**20), "max_rss_mib": round(usage.ru_maxrss / 2**10),
            "load_1min_after": round(os.getloadavg()[0], 1)}


def make_recipe(work: Path, inputs: Path, files_per_batch: int) -> Path:
    """The sample Splendor recipe pointed at the synthetic logs."""
    text = (ROOT / "samples" / "splendor.toml").read_text()
    text = text.replace('input_dir = "splendor"', f'input_dir = "{inputs}"')
    text = text.replace('output_dir = "../out/splendor-demo"', f'output_dir = "{work / "out"}"')
    text = re.sub(r"files_per_batch = \d+", f"files_per_batch = {files_per_batch}", text)
    recipe = work / "recipe.toml"
    recipe.write_text(text)
    return recipe


def bench(files: int, work: Path, workers: int, files_per_batch: int, end_to_end: bool) -> dict:
    """Generate (once) and run one size; the figures of every stage."""
    inputs = work / f"games-{files}"
    if not (inputs / ".complete").exists():
        shutil.rmtree(inputs, ignore_errors=True)
        started = time.perf_counter()
        write_corpus(inputs, files)
        (inputs / ".complete").write_text(f"{time.perf_counter() - started:.1f}\n")
    size_mib = sum(p.stat().st_size for p in inputs.rglob("*.csv")) / 2**20
    run_dir = work / f"run-{files}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    recipe = make_recipe(run_dir, inputs, files_per_batch)
    result = {"files": files, "input_mib": round(size_mib), "stages": {}}
    for stage in STAGES:
        result["stages"][stage] = run_luigi(stage, recipe, workers, run_dir / f"{stage}.log")
    stats = json.loads((run_dir / "out" / "final" / "stats.json").read_text())
    result["rows"] = stats["rows"]["total"]
    result["columns"] = len(json.loads((run_dir / "out" / "final" / "feature_cols.json").read_text()))
    result["batches"] = len(list((run_dir / "out" / "intermediate").glob("batch_*.frames")))
    result["staged_seconds"] = round(sum(s["seconds"] for s in result["stages"].values()), 1)
    if end_to_end:
        shutil.rmtree(run_dir / "out")
        result["end_to_end"] = run_luigi("BuildDataset", recipe, workers, run_dir / "BuildDataset.log")
    shutil.rmtree(run_dir / "out")
    return result


def table(results: list[dict]) -> str:
    """The results as a Markdown table."""
    lines = ["| files | rows | batches | stage | wall s | CPU s | peak RSS MiB (tree, sampled) | max RSS MiB "
             "(one process) | load after |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        stages = dict(r["stages"], **({"BuildDataset (one run)": r["end_to_end"]} if "end_to_end" in r else {}))
        for stage, figures in stages.items():
            lines.append(f"| {r['files']} | {r['rows']} | {r['batches']} | {stage} | {figures['seconds']} | "
                         f"{figures['cpu_seconds']} | "
                         f"{figures['peak_rss_mib']} | {figures['max_rss_mib']} | {figures['load_1min_after']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[7259], help="dataset sizes in files (games)")
    parser.add_argument("--workers", type=int, default=2, help="luigi workers")
    parser.add_argument("--files-per-batch", type=int, default=100)
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench-csv_games")
    parser.add_argument("--end-to-end", action="store_true", help="also time one BuildDataset run from scratch")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = [bench(n, args.work.resolve(), args.workers, args.files_per_batch, args.end_to_end) for n in args.files]
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(),
               "memory_gib": round(psutil.virtual_memory().total / 2**30)}
    (args.work / "results.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(table(results))


if __name__ == "__main__":
    main()
