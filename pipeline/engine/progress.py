"""A running task's progress: to the scheduler (UI) as percentage and status, and to its run record.

The run record (``monitor/<task id>.json`` below the dataset's output folder, see
``Layout.monitor``) is a small JSON file rewritten atomically: host and pid, state, timing, done/total,
failures, time spent waiting for resources and peak memory. The terminal progress of the
main process and the run report read these files, so progress from every worker process
is seen whatever scheduler runs the tasks.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import luigi

from pipeline.config import guard
from pipeline.engine.resources import Limits, peak_memory_mb, reset_peak_memory, wait_for_resources
from pipeline.engine.storage import HOST, read_json, write_json

logger = logging.getLogger("luigi-interface")


class RunRecord:
    """The record of one task run, kept in memory and rewritten atomically on each update."""

    def __init__(self, folder: Path, task: luigi.Task):
        self.path = folder / f"{task.task_id}.json"
        self.data: dict[str, Any] = {
            "task": task.task_id, "family": task.task_family, "params": task.to_str_params(),
            "host": HOST, "pid": os.getpid(), "state": "running", "started": time.time(), "finished": None,
            "seconds": None, "unit": None, "done": 0, "total": 0, "failures": 0, "records": None, "waited_s": 0.0,
            "status": "", "peak_rss_mb": None,
        }
        reset_peak_memory()
        self.save()

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.save()

    def finish(self, state: str) -> None:
        """Mark the run done or failed, with its duration and this process's peak RSS during it."""
        now = time.time()
        self.update(state=state, finished=now, seconds=now - self.data["started"], peak_rss_mb=peak_memory_mb())

    def save(self) -> None:
        write_json(self.path, self.data)


def read_records(folder: Path) -> list[dict[str, Any]]:
    """Every run record in ``folder`` (unreadable ones skipped: they are being replaced)."""
    if not folder.is_dir():
        return []
    records = (read_json(path) for path in sorted(folder.glob("*.json")))
    return [record for record in records if record]


def guard_limits() -> Limits:
    """The resource guard's thresholds from ``[guard]`` in luigi.cfg."""
    config = guard()
    return Limits(config.min_available_mb, config.max_load_percent, config.load_minutes,
                  config.max_wait_s, config.poll_s)


PUBLISH_EVERY_S = 0.5
"""Progress is published at most this often (and always at the end): each publication is a
scheduler call and a run-record write."""


class TaskProgress:
    """The heavy part of a task: waits for resources, then publishes done/total, rate, ETA, failures.

    Create it inside ``run()`` right before the heavy work: creating it runs the resource
    guard (``[guard]`` thresholds), whose reason for waiting shows as the task's status.
    Progress is published when the integer percentage moves, at most every PUBLISH_EVERY_S.
    """

    def __init__(self, task: luigi.Task, unit: str):
        self.task, self.unit = task, unit
        self.record: RunRecord | None = getattr(task, "run_record", None)
        waited = wait_for_resources(guard_limits(), self._say)
        if self.record:
            self.record.update(unit=unit, waited_s=round(self.record.data["waited_s"] + waited, 3))
        self.started = time.monotonic()
        self.percent, self.published = -1, -PUBLISH_EVERY_S

    def _say(self, message: str) -> None:
        logger.info("%s: %s", self.task, message)
        self.task.set_status_message(message)
        if self.record:
            self.record.update(status=message)

    def __call__(self, done: int, total: int, failures: int = 0, records: int | None = None) -> None:
        percent = 100 * done // max(total, 1)
        now = time.monotonic()
        if percent == self.percent or (done < total and now - self.published < PUBLISH_EVERY_S):
            return
        self.percent, self.published = percent, now
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else 0.0
        read = "" if records is None else f", {records} records ({records / elapsed:.0f}/s)"
        status = f"{done}/{total} {self.unit}, {rate:.1f}/s{read}, ETA {eta:.0f}s, {failures} failures"
        self.task.set_progress_percentage(percent)
        self.task.set_status_message(status)
        if self.record:
            self.record.update(done=done, total=total, failures=failures, records=records, status=status)
