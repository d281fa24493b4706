"""Operating a run: Luigi event handlers that keep each task's run record and the terminal progress.

Every :class:`DatasetTask` (whatever its flow) gets, through Luigi's events:

- in the process that runs it: a run record (``monitor/<task id>.json``) opened when it
  starts and closed with its duration and peak RSS when it succeeds or fails;
- in the main process: a place in the run's terminal progress (engine/console.py), weighed
  by the bytes it reads, and at the end the report's path added to Luigi's execution summary.

With a central scheduler (luigid), the main process also sets the run's progress as the
status message and percentage of the command line's task (``BuildDataset``), so the web UI
shows run-level percent, files, rate and ETA on it while the other tasks run.

The main process also handles SIGINT and SIGTERM (pipeline/interrupts.py) from its first
scheduled task on when the run comes from a command line and ``python -m pipeline`` does not
already, so that ``luigi --module pipeline`` stops the same way.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
import urllib.request

import luigi
import luigi.cmdline_parser
import luigi.interface

from pipeline import interrupts
from pipeline.config import progress
from pipeline.engine.console import RunConsole, Snapshot, describe
from pipeline.engine.failures import clear_stop_markers, run_token
from pipeline.engine.layout import Layout, claim
from pipeline.engine.progress import RunRecord
from pipeline.engine.storage import remove_stale_temps
from pipeline.recipe import load_recipe
from pipeline.tasks.dataset import DatasetTask

logger = logging.getLogger("luigi-interface")
SUMMARY_END = "===== Luigi Execution Summary ====="
WORKED = re.compile(r"ran successfully|being run by (another|other) worker")
"""How Luigi's summary says that tasks ran in this run or were running on another worker (another host)."""


def layout_of(task: DatasetTask) -> Layout:
    """The output layout of ``task``'s dataset (from its recipe only: no input discovery)."""
    return Layout.of(load_recipe(task.recipe))


class RootMessage:
    """Sets a snapshot of the run as the status message and percentage of the run's root task on luigid."""

    TIMEOUT_S = 2.0

    def __init__(self, url: str, task_id: str):
        self.url, self.task_id = url.rstrip("/"), task_id
        self.failed = False

    def _call(self, method: str, **data) -> None:
        body = urllib.parse.urlencode({"data": json.dumps({"task_id": self.task_id, **data})}).encode()
        with urllib.request.urlopen(f"{self.url}/api/{method}", body, timeout=self.TIMEOUT_S):
            pass

    def __call__(self, snap: Snapshot) -> None:
        try:
            # the percentage first: a reader that sees the new message sees its percentage too
            self._call("set_task_progress_percentage", progress_percentage=int(100 * snap.fraction))
            self._call("set_task_status_message", status_message=f"run: {describe(snap)}")
        except OSError as exc:  # the scheduler's own connection reports a down scheduler; say it once here
            if not self.failed:
                logger.warning("run progress not sent to the scheduler at %s: %s", self.url, exc)
            self.failed = True


def root_message() -> RootMessage | None:
    """The run's root message when a command line runs against a central scheduler, else None."""
    parser = luigi.cmdline_parser.CmdlineParser.get_instance()
    if parser is None:
        return None
    config = luigi.interface.core()
    if config.local_scheduler:
        return None
    root = parser.get_task_obj()
    if not isinstance(root, DatasetTask):
        return None
    return RootMessage(config.scheduler_url or f"http://{config.scheduler_host}:{config.scheduler_port}/",
                       root.task_id)


class RunWatch:
    """The main process's view of the current run: the console and the datasets it touches."""

    def __init__(self) -> None:
        self.console: RunConsole | None = None
        self.layouts: dict[str, Layout] = {}
        self.signals = False
        """Whether this run installed the signal handlers (and so restores them)."""
        self.summarised = self.worked = False
        """Whether the last run reached Luigi's summary (not so when Luigi's process lock refused it), and whether
        that said tasks ran, here or on another worker."""
        self.attempted: set[str] = set()
        """The recipes whose stop markers this command cleared (once per command, however many runs it makes)."""

    def scheduled(self, task: luigi.Task) -> None:
        """``task`` is incomplete and will run: count it in the progress."""
        if not isinstance(task, DatasetTask):
            return
        if self.console is None:
            config = progress()
            self.console = RunConsole(config.console, config.refresh_s, config.log_every_s, publish=root_message())
            if luigi.cmdline_parser.CmdlineParser.get_instance():  # a command line's run, not luigi.build's
                self.signals = interrupts.install(self.halt)
        layout = self._layout(task)
        self.console.watch(task.task_id, layout.monitor / f"{task.task_id}.json", task.progress_weight())

    def present(self, task: luigi.Task) -> None:
        """``task`` is already complete: not part of the work, but its dataset's report is."""
        if isinstance(task, DatasetTask):
            self._layout(task)
            if self.console:
                self.console.forget(task.task_id)

    def _layout(self, task: DatasetTask) -> Layout:
        """The layout of ``task``'s dataset; the first time in a run, its dead writers' temps are removed.

        Every folder (report and monitor too), whatever stage the run starts at. Before any
        worker starts, this command's run token is set (forked and spawned workers inherit it)
        and, once per command, earlier attempts' stop markers are removed: a new command is a new attempt.
        """
        if task.recipe not in self.layouts:
            layout = self.layouts[task.recipe] = layout_of(task)
            remove_stale_temps(layout.root)
            run_token()
            if task.recipe not in self.attempted:
                clear_stop_markers(layout)
                self.attempted.add(task.recipe)
        return self.layouts[task.recipe]

    def finish(self) -> list[str]:
        """End the run's console; the lines naming each dataset's report."""
        if self.console:
            self.console.stop()
        lines = [f"Report: {layout.report / 'report.md'}" for layout in self.layouts.values()
                 if (layout.report / "report.md").is_file()]
        self.console, self.layouts = None, {}
        if self.signals:
            interrupts.restore()
            self.signals = False
        return lines

    def halt(self) -> tuple[int, int, str]:
        """After a signal: stop redrawing; tasks done and scheduled, and what erases the bar (see interrupts.py)."""
        if not self.console:
            return 0, 0, ""
        snap = self.console.snapshot()
        return snap.tasks_done, snap.tasks_total, self.console.halt()


WATCH = RunWatch()
"""The run of this (main) process; Luigi's events are class-level, so is this."""


@DatasetTask.event_handler(luigi.Event.DEPENDENCY_DISCOVERED)
def _discovered(task: luigi.Task, dependency: luigi.Task) -> None:
    WATCH.scheduled(task)
    WATCH.scheduled(dependency)


@DatasetTask.event_handler(luigi.Event.DEPENDENCY_PRESENT)
def _present(task: luigi.Task) -> None:
    WATCH.present(task)


@DatasetTask.event_handler(luigi.Event.START)
def _started(task: DatasetTask) -> None:
    recipe = load_recipe(task.recipe)
    claim(recipe.output_dir, recipe.name)  # before anything is written there
    if recipe.intermediate_dir:
        claim(recipe.intermediate_dir, recipe.name)
    task.run_record = RunRecord(layout_of(task).monitor, task)


@DatasetTask.event_handler(luigi.Event.SUCCESS)
def _succeeded(task: DatasetTask) -> None:
    if getattr(task, "run_record", None):
        task.run_record.finish("done")


@DatasetTask.event_handler(luigi.Event.FAILURE)
def _failed(task: DatasetTask, _exception: BaseException) -> None:
    if getattr(task, "run_record", None):
        task.run_record.finish("failed")


class _RunEnd(logging.Filter):
    """At Luigi's execution summary, end the run.

    The summary is the main process's last word on a run: the console stops there, the
    summary gains a line per dataset saying where its report is, and whether tasks ran, here or
    on another worker, is noted (python -m pipeline then looks again).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.rstrip().endswith(SUMMARY_END):
            WATCH.summarised, WATCH.worked = True, bool(WORKED.search(record.msg))
            lines = WATCH.finish()
            if lines:
                head, _, _ = record.msg.rstrip().rpartition(SUMMARY_END)
                record.msg = head + "\n".join(lines) + "\n\n" + SUMMARY_END + "\n"
        return True


logging.getLogger("luigi-interface").addFilter(_RunEnd())
