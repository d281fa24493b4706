"""``python -m pipeline <Task> --recipe R [luigi options]``, and ``python -m pipeline status|cleanup RECIPE``.

``<Task>`` is Luigi's command (``luigi --module pipeline <Task> ...``), except that the number
of worker processes comes from ``--workers`` or else ``[processing] workers`` (luigi.cfg), is
refused when 0 or negative and capped to the CPU count with a warning; a build that another
worker (another host against the same luigid) completed exits 0, and while tasks of it run
elsewhere it runs again every ``[processing] others_poll_s`` seconds until it is complete or
something fails; a ``BuildDataset``
that completes while input files failed exits 5; SIGINT and SIGTERM stop every worker and
exit 130 and 143 with one line. ``status`` and ``cleanup`` need no scheduler. Every exit code
is in pipeline/exitcodes.py and docs/operations.md.
"""

from __future__ import annotations

import sys
import time

import luigi
import luigi.cmdline_parser
import luigi.interface
import luigi.retcodes
import luigi.rpc

from pipeline import exitcodes, interrupts, upkeep
from pipeline.config import processing
from pipeline.engine.resources import WorkersError, resolve_workers
from pipeline.errors import PipelineError
from pipeline.recipe import Recipe, load_recipe
from pipeline.tasks import BuildDataset
from pipeline.tasks.operations import WATCH

HELP = {"--help", "--help-all"}
USAGE = "usage: python -m pipeline status|cleanup RECIPE, or python -m pipeline <Task> --recipe RECIPE [luigi options]"


def split_workers(argv: list[str]) -> tuple[list[str], int | None]:
    """``argv`` without its ``--workers N`` / ``--workers=N``, and N (None when absent)."""
    rest, workers, args = [], None, iter(argv)
    for arg in args:
        if arg == "--workers" or arg.startswith("--workers="):
            value = arg.partition("=")[2] if "=" in arg else next(args, "")
            try:
                workers = int(value)
            except ValueError:
                raise WorkersError(f"--workers {value!r}: the number of workers must be a whole number") from None
        else:
            rest.append(arg)
    return rest, workers


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def root_task(argv: list[str]) -> luigi.Task:
    """The task ``argv`` names (Luigi's command line, parsed again)."""
    with luigi.cmdline_parser.CmdlineParser.global_instance(argv) as command:
        return command.get_task_obj()


def skipped_files_code(task: luigi.Task) -> int:
    """:data:`exitcodes.SKIPPED_FILES` when ``task`` built a dataset whose input files partly failed, else 0."""
    if not isinstance(task, BuildDataset):
        return exitcodes.SUCCESS
    recipe = load_recipe(task.recipe)
    skipped = upkeep.skipped_inputs(recipe)
    if not skipped:
        return exitcodes.SUCCESS
    what = "frames" if recipe.kind.flow == "ptv" else "input files"
    warn(f"{recipe.name} is built, but {skipped} {what} failed and were left out (see the run report); "
         f"exit code {exitcodes.SKIPPED_FILES}")
    return exitcodes.SKIPPED_FILES


def build(argv: list[str]) -> int:
    """Run Luigi's command with the workers resolved; its exit code (see the module's docstring).

    Luigi says "run by another worker" (10) or "not run" (25) for a task another host ran or
    runs: the build is then complete (0), or still being worked on (look again), or not done.
    """
    try:
        rest, requested = split_workers(argv)
        workers = resolve_workers(requested, processing().workers, warn=warn)
    except WorkersError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    argv = ["--module", "pipeline", *rest, "--workers", str(workers)]
    retcodes, poll_s = luigi.retcodes.retcode(), processing().others_poll_s
    code, busy_before = run_luigi(argv), False
    while WATCH.summarised and code in (retcodes.already_running, retcodes.not_run):
        task = root_task(argv)
        if task.complete():
            code = exitcodes.SUCCESS
            break
        busy = WATCH.worked or running_elsewhere(argv, task)
        if poll_s <= 0 or not (busy or busy_before):
            break
        # Tasks ran here or run on another worker: look again until the build is done or fails; once more after
        # they stopped, as a dead worker's tasks were failed by the scheduler meanwhile and the next run takes them.
        busy_before = busy
        time.sleep(poll_s)
        code = run_luigi([*argv, "--no-lock"])  # this process holds Luigi's lock already
    if isinstance(code, str):  # Luigi's "No task specified"
        print(f"error: {code}; {USAGE}", file=sys.stderr)
        return exitcodes.USAGE
    if code or HELP.intersection(argv):
        return code or exitcodes.SUCCESS
    return skipped_files_code(root_task(argv))


def running_elsewhere(argv: list[str], task: luigi.Task) -> bool:
    """Whether the central scheduler of ``argv`` has a task of ``task``'s recipe running, on any worker."""
    with luigi.cmdline_parser.CmdlineParser.global_instance(argv):
        core = luigi.interface.core()
    if core.local_scheduler or not hasattr(task, "recipe"):
        return False
    url = core.scheduler_url or f"http://{core.scheduler_host}:{core.scheduler_port}/"
    running = luigi.rpc.RemoteScheduler(url).task_list(status="RUNNING", upstream_status="")
    return any(entry.get("params", {}).get("recipe") == task.recipe for entry in running.values())


def run_luigi(argv: list[str]) -> int | str:
    """One run of Luigi's command: its exit code (a message when Luigi exits with one)."""
    WATCH.summarised = WATCH.worked = False
    try:
        luigi.retcodes.run_with_retcodes(argv)
    except SystemExit as done:
        return done.code or exitcodes.SUCCESS
    return exitcodes.SUCCESS


def show_status(recipe: Recipe, verify: bool = False) -> int:
    """Print each stage's state; 0 when the build is complete, :data:`exitcodes.NOT_BUILT` when not."""
    state = upkeep.status(recipe, verify)
    print("\n".join(state.lines), flush=True)
    return exitcodes.SUCCESS if state.built else exitcodes.NOT_BUILT


def run_cleanup(recipe: Recipe) -> int:
    """Remove the intermediates and say what and how many bytes; :data:`exitcodes.NOT_BUILT` when refused."""
    try:
        removed = upkeep.cleanup(recipe)
    except upkeep.NotBuiltError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exitcodes.NOT_BUILT
    print("\n".join(upkeep.cleanup_lines(removed)), flush=True)
    return exitcodes.SUCCESS


COMMANDS = {"status": show_status, "cleanup": run_cleanup}
"""The plain commands: they read the outputs' records and need no scheduler."""


def command(name: str, args: list[str]) -> int:
    """``python -m pipeline status|cleanup RECIPE`` (``status`` also takes ``--verify``)."""
    verify = name == "status" and "--verify" in args
    args = [arg for arg in args if not (verify and arg == "--verify")]
    if len(args) != 1 or args[0].startswith("-"):
        print(f"error: {name} takes one argument, the recipe; {USAGE}", file=sys.stderr)
        return exitcodes.USAGE
    try:
        return show_status(load_recipe(args[0]), verify) if verify else COMMANDS[name](load_recipe(args[0]))
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exitcodes.USAGE


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        return command(args[0], args[1:])
    interrupts.install(WATCH.halt)
    return build(args)


if __name__ == "__main__":
    sys.exit(main())
