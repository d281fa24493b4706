"""Terminal progress of a whole run: one bar on a terminal, else periodic log lines; never stdout.

It runs in the main ``luigi`` process and sums the run records (engine/progress.py) of the
tasks scheduled by this run, which every worker process writes, so the whole run shows as
one line whatever the number of workers. Tasks weigh by the bytes they read, so the merge
and the split count as much as the batches; log lines never run into the bar; with a
central scheduler the same line is the run's root task's status message in the web UI.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pipeline.engine.resources import WAITING
from pipeline.engine.storage import read_json

logger = logging.getLogger("luigi-interface")


@dataclass(frozen=True)
class Snapshot:
    """The run as a whole: tasks done/failed/total, the weighted fraction done, the main unit's count and rate, ETA."""

    tasks_done: int
    tasks_failed: int
    tasks_total: int
    fraction: float
    unit: str
    units_done: int
    rate: float
    eta: float | None
    failures: int
    """Failed input files (or other units) plus failed tasks."""
    waiting: int = 0
    """Tasks held by the resource guard."""


def clock(seconds: float | None) -> str:
    """``1h02m03s`` / ``2m03s`` / ``3s``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def task_fraction(record: dict | None, started: float) -> float:
    """How much of one task is done: 1 when done, its done/total while running, 0 when failed or not begun."""
    if not record or record["started"] < started or record["state"] == "failed":
        return 0.0
    if record["state"] == "done":
        return 1.0
    return min(record["done"] / record["total"], 1.0) if record["total"] else 0.0


def summarise(records: list[dict | None], started: float, now: float,
              weights: list[float | None] | None = None) -> Snapshot:
    """The whole run from the run records of its tasks (None or older than ``started``: not begun).

    Each task counts by its weight (the bytes it reads, see ``DatasetTask.progress_weight``), so
    a merge over every batch weighs as much as all the batches; a task of unknown weight counts
    as the mean known one (all equal when none is known). A failed task counts as not done.
    """
    known = [w for w in weights or () if w is not None]
    default = sum(known) / len(known) if known else 1.0
    weights = [default if w is None else w for w in weights or [None] * len(records)]
    if not sum(weights):  # nothing to weigh by (empty inputs): every task alike
        weights = [1.0] * len(records)
    current = [r for r in records if r and r["started"] >= started]
    done = sum(r["state"] == "done" for r in current)
    failed = sum(r["state"] == "failed" for r in current)
    fraction = sum(w * task_fraction(r, started) for r, w in zip(records, weights, strict=True)) / (sum(weights) or 1)
    units = Counter(r["unit"] for r in current if r["unit"])
    unit = units.most_common(1)[0][0] if units else "tasks"
    units_done = sum(r["done"] for r in current if r["unit"] == unit) if units else done
    elapsed = max(now - started, 1e-9)
    eta = elapsed * (1 - fraction) / fraction if fraction > 0 and not failed else None
    waiting = sum(r["state"] == "running" and r["status"].startswith(WAITING) for r in current)
    return Snapshot(done, failed, len(records), fraction, unit, units_done, units_done / elapsed, eta,
                    sum(r["failures"] for r in current) + failed, waiting)


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


ERASE = "\r\033[K"
"""Erases the terminal line the cursor is on."""


class BarStream:
    """Stands in for the terminal stream of the log handlers while a bar is shown.

    Each log line is written as one piece that starts by erasing the bar, so a line from this
    process or from a worker process never runs into the bar, whichever writes first; here
    the console's lock keeps a redraw from landing between the two.
    """

    def __init__(self, console: RunConsole):
        self.console, self.stream = console, console.stream

    def write(self, text: str) -> int:
        if os.getpid() != self.console.pid:  # a worker process: no bar of its own, and a forked lock may be held
            self.stream.write(ERASE + text)
            self.stream.flush()
            return len(text)
        with self.console.lock:
            self.stream.write(ERASE + text)
            self.stream.flush()
            self.console.drawn = False
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


Publish = Callable[[Snapshot], None]
"""Where else a snapshot goes (e.g. the scheduler's status message of the run's root task)."""


class RunConsole:
    """Watches the run records of the tasks a run scheduled and shows their sum on stderr.

    With ``publish``, the sum also goes there every ``publish_s`` seconds (whatever the mode,
    ``off`` included) and once at the end.
    """

    def __init__(self, mode: str = "auto", refresh_s: float = 0.5, log_every_s: float = 30.0,
                 stream: IO[str] | None = None, publish: Publish | None = None, publish_s: float = 1.0):
        self.stream = stream or sys.stderr
        tty = self.stream.isatty() if hasattr(self.stream, "isatty") else False
        self.mode = ("bar" if tty else "log") if mode == "auto" else mode
        self.refresh_s, self.log_every_s = refresh_s, log_every_s
        self.publish, self.publish_s = publish, publish_s
        self.tasks: dict[str, tuple[Path, float | None]] = {}
        self.started = time.time()
        self.lock = threading.Lock()
        self.drawn = False
        self.pid = os.getpid()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handlers: list[logging.StreamHandler] = []

    def watch(self, task_id: str, record: Path, weight: float | None = None) -> None:
        """Count ``task_id`` in this run, by ``weight`` (None: unknown); its run record is at ``record``."""
        self.tasks.setdefault(task_id, (record, weight))
        if self._thread is None and (self.mode != "off" or self.publish):
            if self.mode == "bar":
                self._take_log_handlers()
            self._thread = threading.Thread(target=self._loop, name="run-console", daemon=True)
            self._thread.start()

    def forget(self, task_id: str) -> None:
        """``task_id`` turned out to be complete already: not part of this run's work."""
        self.tasks.pop(task_id, None)

    def snapshot(self) -> Snapshot:
        watched = list(self.tasks.values())
        return summarise([read_json(path) for path, _ in watched], self.started, time.time(),
                         [weight for _, weight in watched])

    def _take_log_handlers(self) -> None:
        """Route the log handlers writing to this stream through a :class:`BarStream`."""
        loggers = [logging.getLogger(), logging.getLogger("luigi"), logging.getLogger("luigi-interface")]
        for handler in {h for log in loggers for h in log.handlers}:
            if isinstance(handler, logging.StreamHandler) and handler.stream is self.stream:
                handler.setStream(BarStream(self))
                self._handlers.append(handler)

    def _give_back_log_handlers(self) -> None:
        for handler in self._handlers:
            handler.setStream(self.stream)
        self._handlers = []

    def _draw(self) -> None:
        if self.mode == "bar":
            width = shutil.get_terminal_size((100, 20)).columns
            line = bar(self.snapshot(), width)
            with self.lock:
                self.stream.write(ERASE + line)
                self.stream.flush()
                self.drawn = True
        elif self.mode == "log":
            logger.info("progress: %s", describe(self.snapshot()))

    def _loop(self) -> None:
        wait = self.refresh_s if self.mode == "bar" else self.log_every_s if self.mode == "log" else self.publish_s
        drawn = published = time.monotonic()
        while not self._stop.wait(min(wait, self.publish_s) if self.publish else wait):
            now = time.monotonic()
            if self.mode != "off" and now - drawn >= wait - 1e-3:
                self._draw()
                drawn = now
            if self.publish and now - published >= self.publish_s - 1e-3:
                self.publish(self.snapshot())
                published = now

    def halt(self) -> str:
        """Stop redrawing at once (the process is about to exit); what erases the bar, if one is drawn."""
        self._stop.set()
        self._give_back_log_handlers()
        return ERASE if self.mode == "bar" and self.drawn else ""

    def stop(self) -> None:
        """Stop redrawing and show the final state once (a finished bar ends its line)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        if self.publish:
            self.publish(self.snapshot())
        if self.mode != "off":
            self._draw()
        if self.mode == "bar":
            with self.lock:
                self.stream.write("\n")
                self.stream.flush()
                self.drawn = False
        self._give_back_log_handlers()
