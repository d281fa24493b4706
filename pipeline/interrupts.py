"""Stopping a run on SIGINT or SIGTERM: every worker process stops, the run stays resumable, one line says so.

In the main process the signal becomes :class:`Interrupted`, a KeyboardInterrupt, which Luigi lets
through: on its way out Luigi's worker terminates every task process and their children. A task
process (Luigi forks one per task when ``--workers`` > 1) exits at once, silently, with the
signal's exit code: every output is written under a temporary name and renamed into place, and
each stage's record is written last, so what it leaves is ignored and redone by the next run.
"""

from __future__ import annotations

import os
import signal
import threading

from pipeline.exitcodes import interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_previous: dict[int, object] = {}
"""The handlers :func:`install` replaced (empty: not installed)."""


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (``signum``); ``code`` is its exit code."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.code = interrupted(signum)


def install() -> bool:
    """Handle SIGINT and SIGTERM as above; False (and nothing done) when already installed or not the main thread."""
    if _previous or threading.current_thread() is not threading.main_thread():
        return False
    main, stopping = os.getpid(), []

    def handle(signum: int, _frame) -> None:
        if os.getpid() != main:
            os._exit(interrupted(signum))  # a task process: the main process reports the interruption
        if not stopping:  # a second signal must not cut short the stopping of the workers
            stopping.append(signum)
            raise Interrupted(signum)

    _previous.update({number: signal.signal(number, handle) for number in SIGNALS})
    return True


def restore() -> None:
    """Put back the handlers :func:`install` replaced."""
    for number, handler in _previous.items():
        signal.signal(number, handler)
    _previous.clear()


def message(stop: Interrupted, done: int, total: int) -> str:
    """The one line an interrupted run prints."""
    return (f"interrupted by {signal.Signals(stop.signum).name} after {done} of {total} tasks of this run; "
            "run the same command to resume")
