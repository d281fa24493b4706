"""Terminal progress of a whole run: one bar on a terminal, else periodic log lines; never stdout.

It runs in the main ``luigi`` process and sums the run records (engine/progress.py) of the
tasks scheduled by this run, which every worker process writes, so the whole run shows as
one line whatever the number of workers.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pipeline.engine.resources import WAITING
from pipeline.engine.storage import read_json

logger = logging.getLogger("luigi-interface")


@dataclass(frozen=True)
class Snapshot:
    """The run as a whole: tasks done/failed/total, the main unit's count and rate, and the ETA."""

    tasks_done: int
    tasks_failed: int
    tasks_total: int
    fraction: float
    unit: str
    units_done: int
    rate: float
    eta: float | None
    failures: int
    waiting: int = 0
    """Tasks held by the resource guard."""


def clock(seconds: float | None) -> str:
    """``1h02m03s`` / ``2m03s`` / ``3s``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def summarise(records: list[dict | None], started: float, now: float) -> Snapshot:
    """The whole run from the run records of its tasks (None or older than ``started``: not begun)."""
    current = [r for r in records if r and r["started"] >= started]
    done = sum(r["state"] == "done" for r in current)
    failed = sum(r["state"] == "failed" for r in current)
    fraction = sum(1.0 if r["state"] != "running" else r["done"] / r["total"] if r["total"] else 0.0
                   for r in current) / max(len(records), 1)
    units = Counter(r["unit"] for r in current if r["unit"])
    unit = units.most_common(1)[0][0] if units else "tasks"
    units_done = sum(r["done"] for r in current if r["unit"] == unit) if units else done
    elapsed = max(now - started, 1e-9)
    eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
    waiting = sum(r["state"] == "running" and r["status"].startswith(WAITING) for r in current)
    return Snapshot(done, failed, len(records), fraction, unit, units_done, units_done / elapsed, eta,
                    sum(r["failures"] for r in current), waiting)


def describe(snap: Snapshot) -> str:
    """``12/40 tasks 37% | 1234 files 56.2/s | ETA 1m05s | 0 failures``."""
    failed = f" ({snap.tasks_failed} failed)" if snap.tasks_failed else ""
    waiting = f" | {snap.waiting} {WAITING}" if snap.waiting else ""
    return (f"{snap.tasks_done}/{snap.tasks_total} tasks{failed} {100 * snap.fraction:.0f}% | "
            f"{snap.units_done} {snap.unit} {snap.rate:.1f}/s | ETA {clock(snap.eta)} | {snap.failures} failures"
            f"{waiting}")


def bar(snap: Snapshot, width: int) -> str:
    """A one-line bar ``[#####.....] <describe>`` fitting ``width`` columns."""
    text = describe(snap)
    cells = max(10, min(40, width - len(text) - 3))
    filled = int(cells * snap.fraction)
    return f"[{'#' * filled}{'.' * (cells - filled)}] {text}"[:max(width - 1, 20)]


class RunConsole:
    """Watches the run records of the tasks a run scheduled and shows their sum on stderr."""

    def __init__(self, mode: str = "auto", refresh_s: float = 0.5, log_every_s: float = 30.0,
                 stream: IO[str] | None = None):
        self.stream = stream or sys.stderr
        tty = self.stream.isatty() if hasattr(self.stream, "isatty") else False
        self.mode = ("bar" if tty else "log") if mode == "auto" else mode
        self.refresh_s, self.log_every_s = refresh_s, log_every_s
        self.tasks: dict[str, Path] = {}
        self.started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drawn = False
        self._pid = os.getpid()

    def watch(self, task_id: str, record: Path) -> None:
        """Count ``task_id`` in this run; its run record is at ``record``."""
        self.tasks.setdefault(task_id, record)
        if self._thread is None and self.mode != "off":
            self._thread = threading.Thread(target=self._loop, name="run-console", daemon=True)
            self._thread.start()

    def forget(self, task_id: str) -> None:
        """``task_id`` turned out to be complete already: not part of this run's work."""
        self.tasks.pop(task_id, None)

    def snapshot(self) -> Snapshot:
        return summarise([read_json(path) for path in list(self.tasks.values())], self.started, time.time())

    def clear(self) -> None:
        """Erase the bar so that a log line prints cleanly; the next redraw brings it back."""
        if self.mode == "bar" and (self._drawn or os.getpid() != self._pid):  # a worker process cannot know
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._drawn = False

    def _draw(self) -> None:
        if self.mode == "bar":
            width = shutil.get_terminal_size((100, 20)).columns
            self.stream.write("\r\033[K" + bar(self.snapshot(), width))
            self.stream.flush()
            self._drawn = True
        else:
            logger.info("progress: %s", describe(self.snapshot()))

    def _loop(self) -> None:
        wait = self.refresh_s if self.mode == "bar" else self.log_every_s
        while not self._stop.wait(wait):
            self._draw()

    def halt(self) -> str:
        """Stop redrawing at once (the process is about to exit); what erases the bar, if one is drawn."""
        self._stop.set()
        return "\r\033[K" if self.mode == "bar" and self._drawn else ""

    def stop(self) -> None:
        """Stop redrawing and show the final state once (a finished bar ends its line)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._draw()
        if self.mode == "bar":
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
