"""Docs true to the code: every shell command in README.md and docs/*.md runs as written.

Each ```bash block is read line by line (continuations joined, comments dropped, simple
``VAR="..."`` assignments expanded). A Luigi command (``luigi --module pipeline``,
``python -m luigi --module pipeline``, ``python -m pipeline``) must name a registered task
and only options Luigi's parser accepts for it, parsed in-process as the command line would
be; its recipe must exist or be one of the placeholders below. ``python -m pipeline
status|cleanup`` takes one recipe. A script or file the command runs must exist (scripts/
executable). A bare ``luigi`` or ``python`` must come after the block says what to
activate (``source scripts/_venv.sh``), else it must be ``.venv/bin/...``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shlex
from pathlib import Path

import luigi.cmdline_parser
import pytest
from conftest import ROOT

import pipeline  # noqa: F401 - registers the tasks

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDERS = {"R", "RECIPE", "recipe.toml", "R.toml", "my_recipe.toml"}
"""Recipe names the docs use for "your recipe"."""
ACTIVATE = ("source scripts/_venv.sh", ". scripts/_venv.sh", "source .venv/bin/activate")
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)


def commands(doc: Path) -> list[tuple[str, list[str], bool]]:
    """(line as written, its words with variables expanded, whether a venv is active) of each command."""
    found = []
    for block in BLOCK.findall(doc.read_text()):
        variables, active = {}, False
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith(ACTIVATE):
                active = True
            assignment = re.fullmatch(r'([A-Z_]+)="([^"]*)"', line)
            if assignment:
                variables[assignment[1]] = assignment[2]
                continue
            expanded = re.sub(r"\$([A-Z_]+)", lambda m, known=variables: known.get(m[1], m[0]), line)
            words = shlex.split(expanded, comments=True)
            if words:
                found.append((line, words, active))
    return found


ALL = [(doc.relative_to(ROOT).as_posix(), *command) for doc in DOCS for command in commands(doc)]


def luigi_args(words: list[str]) -> list[str] | None:
    """The arguments after ``--module pipeline`` (or of ``python -m pipeline``), or None for another command."""
    program = Path(words[0]).name
    if len(words) < 3:
        return None
    if program == "luigi" and words[1:3] == ["--module", "pipeline"]:
        return words[3:]
    if program.startswith("python") and words[1:5] == ["-m", "luigi", "--module", "pipeline"]:
        return words[5:]
    if program.startswith("python") and words[1:3] == ["-m", "pipeline"]:
        return words[3:]
    return None


def check_recipe(recipe: str, where: str) -> None:
    assert recipe in PLACEHOLDERS or (ROOT / recipe).is_file(), f"{where}: no recipe {recipe}"


def check_luigi(args: list[str], where: str) -> None:
    if args[:1] in (["status"], ["cleanup"]):
        rest = [a for a in args[1:] if a != "--verify" or args[0] == "status"]
        assert len(rest) == 1, f"{where}: {args[0]} takes one recipe"
        check_recipe(rest[0], where)
        return
    args = [a for a in args if a != "[--local-scheduler]"]  # operations.md's optional flags, as written there
    args = [a.replace("[--workers", "--workers").rstrip("]") for a in args]
    task = next((a for a in args if not a.startswith("-")), None)
    assert task in luigi.task_register.Register.task_names(), f"{where}: no task {task}"
    parsed = io.StringIO()
    with contextlib.redirect_stderr(parsed), contextlib.redirect_stdout(parsed):
        try:
            luigi.cmdline_parser.CmdlineParser(args)
        except SystemExit as stop:
            pytest.fail(f"{where}: Luigi refuses it ({stop.code}): {parsed.getvalue()[-500:]}")
    if "--recipe" in args:
        check_recipe(args[args.index("--recipe") + 1], where)


@pytest.mark.parametrize(("doc", "line", "words", "active"), ALL, ids=[f"{d}: {c}"[:90] for d, c, *_ in ALL])
def test_every_documented_command_runs_as_written(doc, line, words, active):
    where = f"{doc}: {line}"
    if words[0] in ("source", "."):
        assert (ROOT / words[1]).is_file(), f"{where}: no {words[1]}"
        return
    program = words[0]
    if program.startswith("scripts/"):
        assert os.access(ROOT / program, os.X_OK), f"{where}: {program} is not an executable script"
    if program in ("luigi", "python") and not active:
        pytest.fail(f"{where}: a bare {program} needs `source scripts/_venv.sh` before it, or .venv/bin/{program}")
    args = luigi_args(words)
    if args is not None:
        check_luigi(args, where)
    elif Path(program).name.startswith("python") and len(words) > 1 and words[1].endswith(".py"):
        assert (ROOT / words[1]).is_file(), f"{where}: no {words[1]}"
    elif Path(program).name.startswith("python") and words[1:2] == ["-m"]:
        assert importlib.util.find_spec(words[2]), f"{where}: no module {words[2]}"


def test_the_commands_are_found():
    """The extraction sees the commands it should (a broken parser would pass every doc)."""
    lines = {line for _, line, *_ in ALL}
    assert ".venv/bin/luigi --module pipeline BuildDataset --recipe samples/hex.toml --local-scheduler --workers 2" \
        in lines
    assert sum(luigi_args(words) is not None for _, _, words, _ in ALL) > 20
