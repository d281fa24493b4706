"""Running the pipeline and the baseline as subprocesses: wall time, Luigi's task counts, peak RSS, bytes written."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Run:
    """One finished subprocess: wall and CPU seconds, peak RSS and bytes written (its whole tree), stderr.

    ``write_chars`` is what the tree passed to ``write()`` (files, pipes, its log): deterministic.
    ``write_bytes`` is what it dirtied in the page cache for the block layer (0 on tmpfs; files
    deleted before writeback still count).
    """

    seconds: float
    cpu_seconds: float
    peak_rss: int
    write_chars: int
    write_bytes: int
    stderr: str

    def count(self, pattern: str) -> int:
        """An integer from Luigi's execution summary, e.g. ``Scheduled (\\d+) tasks``; 0 if absent."""
        found = re.search(pattern, self.stderr)
        return int(found.group(1)) if found else 0

    @property
    def scheduled(self) -> int:
        return self.count(r"Scheduled (\d+) tasks")

    @property
    def ran(self) -> int:
        return self.count(r"(\d+) ran successfully")


def env() -> dict[str, str]:
    """The environment users run with: the project's luigi.cfg, the project importable."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "LUIGI_CONFIG_PATH": str(ROOT / "luigi.cfg"), "PYTHONPATH": path}


def luigi_command(task: str, recipe: Path, workers: int, *extra: str) -> list[str]:
    """``luigi --module pipeline TASK --recipe R --local-scheduler --workers N`` (as ``python -m luigi``)."""
    return [sys.executable, "-m", "luigi", "--module", "pipeline", task, "--recipe", str(recipe),
            "--local-scheduler", "--workers", str(workers), *extra]


def baseline_command(recipe: Path, workers: int, out: Path) -> list[str]:
    return [sys.executable, str(BENCHMARKS / "baseline.py"), str(recipe), "--workers", str(workers),
            "--out", str(out)]


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants."""
    total = 0
    for each in [process, *process.children(recursive=True)]:
        try:
            total += each.memory_info().rss
        except psutil.Error:
            pass
    return total


def run(command: list[str], cwd: Path, sample_s: float = 0.0, timeout: float = 900) -> Run:
    """Run ``command``; with ``sample_s`` > 0 also sample its process tree's RSS that often.

    Bytes written are the growth of this process's own I/O counters across the run: Linux adds
    a reaped child's counters, and those of the children it reaped, to its parent's, so the
    growth is the whole tree's total, short-lived forks included (sampling the live processes
    would miss those and count a reaped child twice). This process writes nothing meanwhile.
    A non-zero exit raises, with the end of stderr.
    """
    own = psutil.Process()
    with tempfile.TemporaryFile("w+") as err:
        before, io_before = resource.getrusage(resource.RUSAGE_CHILDREN), own.io_counters()
        started = time.perf_counter()
        process = psutil.Popen(command, cwd=cwd, env=env(), stdout=subprocess.DEVNULL, stderr=err)
        peak = 0
        while sample_s > 0 and process.poll() is None:
            try:
                peak = max(peak, tree_rss(process))
            except psutil.Error:
                pass
            time.sleep(sample_s)
        code = process.wait(timeout)
        seconds = time.perf_counter() - started
        after, io_after = resource.getrusage(resource.RUSAGE_CHILDREN), own.io_counters()
        err.seek(0)
        stderr = err.read()
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} exited {code}:\n{stderr[-3000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Run(seconds, cpu, peak, io_after.write_chars - io_before.write_chars,
               io_after.write_bytes - io_before.write_bytes, stderr)
