"""Run an external program on every input file; its stdout or output file is the result.

``command = ["ffprobe", "-print_format", "json", "-show_streams", "{input}"]`` runs the
program with ``{input}`` replaced by the input path (and ``{output}`` by a scratch file
the program may write). The argument list goes straight to the program, never through a
shell. A non-zero exit, a timeout or a missing program fails the file with the exit
code and the tail of stderr. The result is stored as ``files/<relative>.<suffix>``.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.kinds.base import BadInputError, FileResult, Kind, Setting

CAPTURE = ("stdout", "output")
STDERR_TAIL = 2000


class CommandError(BadInputError):
    """The program exited non-zero or ran out of time: the file is bad for this command."""


def _argv(value: Any) -> str | None:
    if not value or not all(isinstance(part, str) for part in value):
        return "must be a non-empty list of strings"
    return None


def _tail(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    return ("…" + text[-STDERR_TAIL:]) if len(text) > STDERR_TAIL else text


def read(path: Path, settings: Mapping[str, Any]) -> FileResult:
    """Run the command on ``path``; the captured bytes become the file's result."""
    with tempfile.TemporaryDirectory(prefix="pipeline-command-") as scratch:
        output = Path(scratch) / "output"
        argv = [part.replace("{input}", str(path)).replace("{output}", str(output)) for part in settings["command"]]
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=settings["timeout"])
        except subprocess.TimeoutExpired as exc:
            raise CommandError(f"{argv[0]} timed out after {settings['timeout']:g} s; stderr: "
                                f"{_tail(exc.stderr or b'')}") from None
        if done.returncode != 0:
            raise CommandError(f"{argv[0]} exited with code {done.returncode}; stderr: {_tail(done.stderr)}")
        if settings["capture"] == "stdout":
            result = done.stdout
        elif output.is_file():
            result = output.read_bytes()
        else:
            raise CommandError(f"{argv[0]} exited 0 but wrote no {{output}} file")
    return FileResult({}, records=1, blobs={settings["suffix"]: result})


KIND = Kind(
    name="command",
    version="1",
    read=read,
    flow="each",
    settings={
        "command": Setting(list, help="program and arguments; {input} and {output} are replaced", check=_argv),
        "capture": Setting(str, "stdout", CAPTURE, "keep the program's stdout, or the {output} file it writes"),
        "suffix": Setting(str, "out", help="the result is stored as files/<relative path>.<suffix>"),
        "timeout": Setting(float, 600.0, help="seconds one file may take",
                           check=lambda t: None if t > 0 else "must be more than 0"),
    },
)
