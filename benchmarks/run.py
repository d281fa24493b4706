"""Benchmarks of the pipeline against a plain multiprocessing baseline: ``python benchmarks/run.py [--quick]``.

Measures, on two generated corpora (many small files, fewer big ones): BuildDataset's wall
time and throughput with 1 and 2 workers against the same work done by ``baseline.py``
(overhead ratio) and against the compute floor; bytes at rest under the output folder and
bytes written by the run, against the bytes of ``final/`` (with the batches compressed as
the recipe's default says, zstd, and, in one more build, not); the no-op re-run and the
number of Luigi tasks; peak RSS of merge and split as the data grows; the trmph encoder
against a per-position Python version.
The full mode writes its results into docs/performance.md; ``--quick`` (under two
minutes) is what CI runs, judging ratios only. The ticks year is measured apart, by
``benchmarks/ticks.py``, and recorded by hand in docs/performance.md's "ticks" section.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import corpora
import encoder
import luigi
import measure
import numpy as np
import psutil
import report
import toml

from pipeline.engine.batches import process_file
from pipeline.engine.discovery import discover
from pipeline.engine.layout import SPLITS
from pipeline.recipe import load_recipe

TARGETS = {
    "overhead_ratio": 1.05,
    "at_rest_ratio": 1.5,
    "written_ratio": 2.0,
    "noop_seconds_100k": 1.5,
    "tasks_100k": 500,
    "rss_growth": 0.10,
    "encoder_speedup": 50.0,
}
"""Issue 14's goals: at most these, but the encoder's speed-up (at least)."""


@dataclass(frozen=True)
class Mode:
    """Sizes of one benchmark mode."""

    throughput: tuple[tuple[str, int], ...]
    """The throughput corpora: (shape, files); the first one is also built uncompressed."""
    repeats: int
    noop_repeats: int
    noop_files: tuple[int, ...]
    memory_files: int
    memory_scales: tuple[int, ...]
    chunk_mb: int
    encoder_games: int


MODES = {
    "quick": Mode(throughput=(("normal", 600), ("large", 24)), repeats=1, noop_repeats=1, noop_files=(2000,),
                  memory_files=60, memory_scales=(1, 4), chunk_mb=1, encoder_games=100),
    "full": Mode(throughput=(("normal", 10_000), ("large", 400)), repeats=3, noop_repeats=5,
                 noop_files=(10_000, 100_000), memory_files=400, memory_scales=(1, 4, 16), chunk_mb=4,
                 encoder_games=2000),
}


def write_recipe(path: Path, tables: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(toml.dumps(tables))
    return path


def dataset(scratch: Path, kind: str, files: int, shape: str, label: str,
            compression: str | None = None) -> tuple[Path, Path]:
    """A recipe over a (cached) corpus and its output folder, emptied."""
    folder, spec = corpora.corpus(scratch, kind, files, shape)
    out = scratch / "out" / f"{kind}-{label}-{shape}-{files}"
    shutil.rmtree(out, ignore_errors=True)
    tables = corpora.recipe_tables(spec, shape, folder, out, compression)
    return write_recipe(scratch / "recipes" / f"{out.name}.toml", tables), out


def compute_floor(recipe_path: Path) -> float:
    """CPU seconds of the per-file function alone over every input file, in this process.

    CPU time rather than wall time: on a shared machine it is what the work costs.
    """
    recipe = load_recipe(recipe_path)
    started = time.process_time()
    for file in discover(recipe.input_dir, recipe.pattern):
        process_file(recipe.kind, recipe.kind_settings, recipe.input_dir / file.relative, file.relative)
    return time.process_time() - started


def same_arrays(final: Path, baseline: Path) -> bool:
    """Whether the baseline wrote the very arrays the pipeline wrote in ``final/``."""
    for split in SPLITS:
        for stem in ("X", "groups"):
            if not np.array_equal(np.load(final / f"{stem}_{split}.npy"), np.load(baseline / f"{stem}_{split}.npy")):
                return False
        for stem in ("labels", "masks"):
            ours, theirs = final / f"{stem}_{split}.npz", baseline / f"{stem}_{split}.npz"
            if ours.exists() != theirs.exists():
                return False
            if ours.exists():
                with np.load(ours) as a, np.load(theirs) as b:
                    if sorted(a.files) != sorted(b.files) or any(not np.array_equal(a[n], b[n]) for n in a.files):
                        return False
    return True


def folder_mb(folder: Path, skip: tuple[str, ...] = ()) -> float:
    """MiB of the files below ``folder``, leaving out its top-level folders ``skip``."""
    return sum(p.stat().st_size for p in folder.rglob("*")
               if p.is_file() and p.relative_to(folder).parts[0] not in skip) / 2**20


RUN_RECORDS = ("monitor", "report")
"""Top-level output folders of run records (progress, the run report), left out of the bytes at rest."""


def footprint(out: Path, runs: list[measure.Run]) -> dict:
    """Bytes at rest under ``out`` (intermediates kept) and the median bytes written by ``runs``
    (builds of ``out`` from nothing), each also against the bytes of ``final/``."""
    final = folder_mb(out / "final")
    at_rest = folder_mb(out, skip=RUN_RECORDS)
    written = statistics.median(r.write_chars for r in runs) / 2**20
    device = statistics.median(r.write_bytes for r in runs) / 2**20
    return {"final_mb": final, "at_rest_mb": at_rest, "at_rest_ratio": at_rest / final,
            "written_mb": written, "written_ratio": written / final,
            "written_device_mb": device, "written_device_ratio": device / final}


def throughput(scratch: Path, kind: str, shape: str, files: int, repeats: int) -> dict:
    """Pipeline vs baseline vs compute floor with 1 and 2 workers, runs interleaved, medians."""
    recipe, out = dataset(scratch, kind, files, shape, "throughput")
    base_out = scratch / "out" / f"{out.name}-baseline"
    times: dict[int, dict[str, list[float]]] = {
        w: {"pipeline": [], "baseline": [], "pipeline_cpu": [], "baseline_cpu": []} for w in (1, 2)}
    floor, builds, same = [], [], None
    for _ in range(repeats):
        floor.append(compute_floor(recipe))
        for workers in (1, 2):
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(base_out, ignore_errors=True)
            run = measure.run(measure.luigi_command("BuildDataset", recipe, workers), scratch)
            base = measure.run(measure.baseline_command(recipe, workers, base_out), scratch)
            builds.append(run)
            for name, each in (("pipeline", run), ("baseline", base)):
                times[workers][name].append(each.seconds)
                times[workers][f"{name}_cpu"].append(each.cpu_seconds)
            same = same_arrays(out / "final", base_out) if same is None else same
    stats = json.loads((out / "final" / "stats.json").read_text())
    files, records, rows = stats["files"]["discovered"], stats["records"]["processed"], stats["rows"]["total"]
    result = {"corpus": f"{files:,} files of {corpora.KINDS[kind].describe(shape)}", "files": files,
              "records": records, "rows": rows, "tasks": builds[-1].scheduled, "same_arrays": same,
              "input_mb": sum(f.stat().st_size for f in recipe_input(recipe)) / 2**20,
              "rows_mb": sum(p.stat().st_size for p in (out / "final").glob("*_*.np*")) / 2**20,
              "floor_1_worker_s": statistics.median(floor), "workers": {}, **footprint(out, builds)}
    for workers, runs in times.items():
        pipeline, baseline = statistics.median(runs["pipeline"]), statistics.median(runs["baseline"])
        cpu = statistics.median(runs["pipeline_cpu"]) / statistics.median(runs["baseline_cpu"])
        floor_s = statistics.median(floor) / workers
        result["workers"][workers] = {
            "pipeline_s": pipeline, "baseline_s": baseline, "floor_s": floor_s,
            "overhead_ratio": pipeline / baseline, "cpu_ratio": cpu, "floor_ratio": pipeline / floor_s,
            "files_per_s": files / pipeline, "records_per_s": records / pipeline, "rows_per_s": rows / pipeline,
            "baseline_files_per_s": files / baseline, "runs": runs}
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(base_out, ignore_errors=True)
    return result


def recipe_input(recipe_path: Path) -> list[Path]:
    recipe = load_recipe(recipe_path)
    return [recipe.input_dir / f.relative for f in discover(recipe.input_dir, recipe.pattern)]


def uncompressed(scratch: Path, kind: str, shape: str, files: int) -> dict:
    """One build (2 workers) with ``[batch] compression = "none"``: its bytes at rest and written."""
    recipe, out = dataset(scratch, kind, files, shape, "uncompressed", compression="none")
    run = measure.run(measure.luigi_command("BuildDataset", recipe, 2), scratch)
    result = {"corpus": f"{files:,} files of {corpora.KINDS[kind].describe(shape)}", "seconds": run.seconds,
              **footprint(out, [run])}
    shutil.rmtree(out, ignore_errors=True)
    return result


def noop(scratch: Path, kind: str, files: int, repeats: int) -> dict:
    """A full build of ``files`` tiny files, then the re-run with everything complete."""
    recipe, out = dataset(scratch, kind, files, "tiny", "noop")
    build = measure.run(measure.luigi_command("BuildDataset", recipe, 2), scratch)
    again = [measure.run(measure.luigi_command("BuildDataset", recipe, 1), scratch) for _ in range(repeats)]
    shutil.rmtree(out, ignore_errors=True)
    return {"files": files, "build_s": build.seconds, "build_tasks": build.scheduled,
            "noop_s": statistics.median(r.seconds for r in again), "noop_runs": [r.seconds for r in again],
            "noop_cpu_s": statistics.median(r.cpu_seconds for r in again),
            "noop_tasks": again[0].scheduled, "noop_ran": max(r.ran for r in again)}


def memory(scratch: Path, kind: str, mode: Mode) -> dict:
    """Peak RSS of MergeBatches and SplitDataset run alone (1 worker) as the data grows."""
    chunk = ("--streaming-chunk-mb", str(mode.chunk_mb))
    first, last = mode.memory_scales[0], mode.memory_scales[-1]
    result = {"chunk_mb": mode.chunk_mb, "from_scale": first, "to_scale": last, "scales": {}}
    for scale in mode.memory_scales:
        recipe, out = dataset(scratch, kind, mode.memory_files * scale, "normal", "memory")
        measure.run(measure.luigi_command("BuildBatches", recipe, 2, *chunk), scratch)
        merge = measure.run(measure.luigi_command("MergeBatches", recipe, 1, *chunk), scratch, sample_s=0.005)
        split = measure.run(measure.luigi_command("SplitDataset", recipe, 1, *chunk), scratch, sample_s=0.005)
        result["scales"][scale] = {"files": mode.memory_files * scale, "data_mb": folder_mb(out / "intermediate"),
                                   "merge_peak_mb": merge.peak_rss / 2**20, "split_peak_mb": split.peak_rss / 2**20}
        shutil.rmtree(out, ignore_errors=True)
    for stage in ("merge", "split"):
        peaks = [result["scales"][scale][f"{stage}_peak_mb"] for scale in (first, last)]
        result[f"{stage}_growth"] = peaks[1] / peaks[0] - 1
    return result


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"nproc": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "cpu": model, "system": platform.platform(), "python": platform.python_version(),
            "luigi": getattr(luigi, "__version__", "?"), "numpy": np.__version__,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def verdicts(results: dict) -> dict:
    """Each target: the measured value and whether it is met (None when this mode did not measure it).

    Targets measured on every throughput corpus hold the worse value and, under ``each``, each
    corpus's. Only full-mode sizes are judged (the RSS growth only up to 16x); the encoder always.
    """
    full = results["mode"] == "full"

    def judge(name: str, value: float | None, judged: bool = full) -> dict:
        met = None if value is None or not judged else (
            value >= TARGETS[name] if name == "encoder_speedup" else value <= TARGETS[name])
        return {"value": value, "goal": TARGETS[name], "met": met}

    def worst(name: str, value) -> dict:
        each = [{"corpus": t["corpus"], **judge(name, value(t))} for t in results["throughput"]]
        return {**judge(name, max(e["value"] for e in each)), "each": each}

    big = next((n for n in results["noop"] if n["files"] == 100_000), None)
    mem = results["memory"]
    return {
        "overhead_ratio": worst("overhead_ratio", lambda t: max(w["overhead_ratio"] for w in t["workers"].values())),
        "at_rest_ratio": worst("at_rest_ratio", lambda t: t["at_rest_ratio"]),
        "written_ratio": worst("written_ratio", lambda t: t["written_ratio"]),
        "noop_seconds_100k": judge("noop_seconds_100k", big and big["noop_s"]),
        "tasks_100k": judge("tasks_100k", big and big["build_tasks"]),
        "rss_growth": judge("rss_growth", max(mem["merge_growth"], mem["split_growth"]), mem["to_scale"] >= 16),
        "encoder_speedup": judge("encoder_speedup", results["encoder"]["speedup"], True),
    }


def run_all(scratch: Path, kind: str, mode_name: str) -> dict:
    mode = MODES[mode_name]
    started = time.perf_counter()
    results = {"mode": mode_name, "kind": kind, "machine": machine(),
               "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]])}
    results["encoder"] = encoder.compare(scratch, mode.encoder_games, repeats=3)
    results["throughput"] = [throughput(scratch, kind, shape, files, mode.repeats) for shape, files in mode.throughput]
    results["uncompressed"] = uncompressed(scratch, kind, *mode.throughput[0])
    results["noop"] = [noop(scratch, kind, files, mode.noop_repeats) for files in mode.noop_files]
    results["memory"] = memory(scratch, kind, mode)
    results["targets"] = verdicts(results)
    results["seconds"] = time.perf_counter() - started
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each (under two minutes)")
    parser.add_argument("--kind", default="hex", choices=sorted(corpora.KINDS))
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "pipeline-benchmarks",
                        help="folder of generated corpora (kept and reused) and outputs")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--doc", type=Path, help="write the results into this Markdown page "
                        "(default for the full mode: docs/performance.md)")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    results = run_all(args.scratch.resolve(), args.kind, mode)
    text = json.dumps(results, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    doc = args.doc or (None if args.quick else measure.ROOT / "docs" / "performance.md")
    if doc:
        report.write(doc, results)
    print(text)


if __name__ == "__main__":
    main()
