"""Stopping a run on SIGINT or SIGTERM: every worker process stops, the run stays resumable, one line says so.

The main process, on the first signal, terminates every process it started (Luigi's task
processes and what they run, e.g. a command kind's program), prints how far the run got and
exits with the signal's code (130, 143). It does this in the handler itself rather than
raising KeyboardInterrupt, which Luigi's in-process scheduler and event callbacks may swallow.
A task process exits at once, silently, with the same code. Nothing is lost: every output is
written under a temporary name and renamed into place, and each stage's record is written
last, so whatever a stopped task leaves is ignored (and its temporary files removed) by the
next run, which resumes from the completed outputs.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

import psutil

from pipeline.exitcodes import interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE_S = 5.0
"""Seconds a terminated process has to exit before it is killed."""
_previous: dict[int, object] = {}
"""The handlers :func:`install` replaced (empty: not installed)."""

Progress = Callable[[], tuple[int, int, str]]
"""Tasks done and scheduled in this run, and what to write before the line (erasing a progress bar)."""


def install(progress: Progress) -> bool:
    """Handle SIGINT and SIGTERM as above; False (and nothing done) when already installed or not the main thread."""
    if _previous or threading.current_thread() is not threading.main_thread():
        return False
    main = os.getpid()

    def handle(signum: int, _frame) -> None:
        if os.getpid() != main:
            os._exit(interrupted(signum))  # a task process: the main process reports the interruption
        stop(signum, progress)

    _previous.update({number: signal.signal(number, handle) for number in SIGNALS})
    return True


def restore() -> None:
    """Put back the handlers :func:`install` replaced."""
    for number, handler in _previous.items():
        signal.signal(number, handler)
    _previous.clear()


def stop(signum: int, progress: Progress) -> None:
    """Terminate every descendant process, print one line, exit with the signal's code."""
    for number in SIGNALS:  # a second signal must not cut this short
        signal.signal(number, signal.SIG_IGN)
    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(children, timeout=GRACE_S)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            continue
    done, total, erase = progress()
    os.write(2, f"{erase}{message(signum, done, total)}\n".encode())
    os._exit(interrupted(signum))


def message(signum: int, done: int, total: int) -> str:
    """The one line an interrupted run prints."""
    return (f"interrupted by {signal.Signals(signum).name} after {done} of {total} tasks of this run; "
            "run the same command to resume")
