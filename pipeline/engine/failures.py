"""Failure semantics shared by every flow: failure records, what counts as bad input, retries, stopping.

A failure record names the file, the 1-based line (or None for the whole file), the error
class and its message. Only bad input (:data:`BAD_INPUT`) is remembered as a file's result;
other errors are tried again by the next command (:func:`run_token`). Under
``on_error = "fail"`` the first failure of a run is written once to a stop marker that every
worker, on every host, checks before its next file.
"""

from __future__ import annotations

import contextlib
import os
import uuid
import zipfile
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError
from pipeline.kinds.base import BadInputError

if TYPE_CHECKING:
    from pipeline.engine.layout import Layout
    from pipeline.engine.plan import Plan


class InputError(PipelineError):
    """Bad input under ``on_error = "fail"``; the message names the file, line and reason."""


def failure(file: str, line: int | None, error: str, message: str) -> dict[str, Any]:
    """One failure record: which file and line, the error class and its message."""
    return {"file": file, "line": line, "error": error, "message": message}


def describe(record: dict[str, Any]) -> str:
    """``file:line: Error: message`` for a failure record."""
    where = record["file"] + (f":{record['line']}" if record["line"] else "")
    return f"{where}: {record['error']}: {record['message']}"


BAD_INPUT = (BadInputError, ValueError, UnicodeError, EOFError, zipfile.BadZipFile)
"""Exceptions that mean the input file is bad: remembered as the file's result."""
RUN_TOKEN = "PIPELINE_RUN_TOKEN"
"""Environment variable naming the current command (set by its main process before any worker starts, so
forked and spawned workers alike inherit it)."""


def run_token() -> str:
    """This command's token: files that failed for a passing reason are tried again by a new command."""
    return os.environ.setdefault(RUN_TOKEN, uuid.uuid4().hex)


def failure_limit(max_failures: int | float, files: int) -> int:
    """How many files may fail: a count, or a fraction (a float below 1) of the files."""
    if isinstance(max_failures, float) and max_failures <= 1:
        return int(max_failures * files)
    return int(max_failures)


def stop_the_run(plan: Plan, first: dict[str, Any]) -> str:
    """Record the run's first failure (the first writer wins); return the failure that stops it.

    The marker is named by the plan's run id, the same on every host and in every process.
    """
    marker = plan.layout.stop_marker(plan.run_id)
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(marker, "x") as handle:
            handle.write(describe(first))
    except FileExistsError:
        pass
    return marker.read_text()


def clear_stop_markers(layout: Layout) -> None:
    """Remove every stop marker: a new command is a new attempt, and a complete build has nothing to stop."""
    for marker in layout.stop.glob("*.txt"):
        marker.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        layout.stop.rmdir()
