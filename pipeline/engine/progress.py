"""Reporting a task's progress to the Luigi scheduler (UI) as percentage and status message."""

from __future__ import annotations

import time

import luigi


class TaskProgress:
    """Publishes done/total, rate, ETA and failures; only when the integer percentage moves."""

    def __init__(self, task: luigi.Task, unit: str):
        self.task, self.unit = task, unit
        self.started = time.monotonic()
        self.percent = -1

    def __call__(self, done: int, total: int, failures: int = 0) -> None:
        percent = 100 * done // max(total, 1)
        if percent == self.percent:
            return
        self.percent = percent
        elapsed = time.monotonic() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        self.task.set_progress_percentage(percent)
        self.task.set_status_message(
            f"{done}/{total} {self.unit}, {rate:.1f}/s, ETA {eta:.0f}s, {failures} failures")
