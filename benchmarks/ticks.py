"""Scale benchmark of the ticks flow: ``python benchmarks/ticks.py [--rows 14000000] [--workers 2]``.

Generates a year of ticks (once; kept in the scratch folder), then runs each stage as its
own Luigi process with the local scheduler and measures its wall time and peak memory:

1. chunking: ``ChunkTicks`` (streams the input into monthly chunk files);
2. analysis: the chunk × universe tasks (``AnalyseChunk``, 12 × 25 = 300 by default);
3. consolidation: ``BuildDataset`` on top (per-universe and overall consolidation);
4. the no-op re-run of ``BuildDataset`` (everything complete).

Peak memory is sampled every 20 ms over the Luigi process and its forked task processes:
the largest single process, and the sum over the tree (which counts pages shared
between the forks more than once, so it overstates). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
ANALYSE = """
import sys, luigi
from pipeline.flows import ticks as flow
from pipeline.recipe import load_recipe
from pipeline.tasks.ticks import AnalyseChunk
recipe = sys.argv[1]
run = flow.run_for(load_recipe(recipe))
chunks = len(flow.chunk_metadata(run)["chunks"])
tasks = [AnalyseChunk(recipe=recipe, chunk=c, universe=u)
         for c in range(1, chunks + 1) for u in range(1, len(run.universes) + 1)]
ok = luigi.build(tasks, workers=int(sys.argv[2]), local_scheduler=True, log_level="WARNING")
sys.exit(0 if ok else 1)
"""


def measure(command: list[str], cwd: Path) -> dict[str, float]:
    """Run ``command``; its wall time and peak RSS (largest process, and summed over its process tree)."""
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(ROOT / "luigi.cfg")}
    cpu_before = _children_cpu()
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    parent = psutil.Process(process.pid)
    largest = total = 0
    while process.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            sizes = []
            for member in tree:
                try:
                    sizes.append(member.memory_info().rss)
                except psutil.Error:
                    pass
            largest, total = max(largest, max(sizes, default=0)), max(total, sum(sizes))
        except psutil.Error:
            pass
        time.sleep(0.02)
    output = process.stdout.read().decode(errors="replace")
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return {"seconds": time.perf_counter() - started, "cpu": _children_cpu() - cpu_before,
            "largest_mb": largest / 2**20, "tree_mb": total / 2**20}


def _children_cpu() -> float:
    """User + system CPU seconds of every finished descendant (Luigi waits for its forked tasks)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=14_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--chunk-size", choices=("daily", "weekly", "monthly"), default="monthly")
    parser.add_argument("--analysis", choices=("necrozma", "next_candle"), default="necrozma")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/ticks-benchmark"))
    args = parser.parse_args()

    data = args.scratch / f"data-{args.rows}-{args.format}"
    if not data.is_dir():
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipeline.synthetic.ticks", str(data / "in"), "--rows", str(args.rows),
                        "--format", args.format], check=True)
        print(f"generated {args.rows} ticks in {time.perf_counter() - started:.1f} s")
    out = data / "out"
    shutil.rmtree(out, ignore_errors=True)
    recipe = data / "recipe.toml"
    recipe.write_text(f'[dataset]\nname = "ticks-benchmark"\nkind = "ticks"\ninput_dir = "in"\n'
                      f'pattern = "*.{args.format}"\noutput_dir = "out"\n'
                      f'[ticks]\nchunk_size = "{args.chunk_size}"\n'
                      f'[universes]\nanalysis = "{args.analysis}"\n'
                      + ("lookbacks = [5, 10, 15, 20, 30]\n" if args.analysis == "necrozma" else ""))
    load = os.getloadavg()[0]
    luigi = [sys.executable, "-m", "luigi", "--module", "pipeline"]
    common = ["--recipe", str(recipe), "--local-scheduler", "--workers", str(args.workers)]
    stages = {
        "chunking (ChunkTicks)": measure([*luigi, "ChunkTicks", *common], data),
        "chunk × universe (AnalyseChunk)": measure([sys.executable, "-c", ANALYSE, str(recipe), str(args.workers)],
                                                   data),
        "consolidation (BuildDataset)": measure([*luigi, "BuildDataset", *common], data),
    }
    total = sum(stage["seconds"] for stage in stages.values())
    noop = measure([*luigi, "BuildDataset", *common], data)
    results = len(list((out / "results").rglob("chunk_*.parquet")))
    print(f"\n{args.rows} ticks ({args.format}), analysis {args.analysis}, {args.chunk_size} chunks, "
          f"{results} chunk × universe results, "
          f"{args.workers} workers, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average before {load:.1f}, after {os.getloadavg()[0]:.1f}\n")
    print("| stage | wall s | CPU s (user + sys) | peak RSS, largest process (MiB) "
          "| peak RSS, summed over forks (MiB) |")
    print("|---|---|---|---|---|")
    for name, stage in [*stages.items(), ("no-op re-run", noop)]:
        print(f"| {name} | {stage['seconds']:.1f} | {stage['cpu']:.1f} | {stage['largest_mb']:.0f} "
              f"| {stage['tree_mb']:.0f} |")
    cpu = sum(stage["cpu"] for stage in stages.values())
    largest = max(stage["largest_mb"] for stage in stages.values())
    print(f"| **total** | **{total:.1f}** | **{cpu:.1f}** | **{largest:.0f}** | |")
    print(f"\nreport: {out / 'final' / 'performance_report.md'}")


if __name__ == "__main__":
    main()
