"""Helpers of the operations tests: recipes, Luigi settings and pipeline runs in subprocesses."""

from __future__ import annotations

import configparser
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from conftest import SHARED_DATA, python_path

ROOT = Path(__file__).resolve().parents[1]
HEX = SHARED_DATA / "hex"
TESTS = Path(__file__).resolve().parent


def write_recipe(folder: Path, input_dir: Path, kind: str = "trmph", files_per_batch: int = 1,
                 on_error: str = "skip", name: str = "ops") -> Path:
    """A recipe building ``input_dir`` into ``folder/out``."""
    path = folder / "recipe.toml"
    path.write_text(f"""[dataset]
name = "{name}"
kind = "{kind}"
input_dir = "{input_dir}"
pattern = "**/*.trmph"
output_dir = "out"

[process]
on_error = "{on_error}"
board_size = 13

[batch]
files_per_batch = {files_per_batch}
""")
    return path


def environment(folder: Path, **sections: dict) -> dict[str, str]:
    """Environment of a run: the project's luigi.cfg with ``sections`` overridden, tests importable.

    The resource guard is off unless ``sections`` sets it: the load of a shared machine must
    not make other tests wait.
    """
    config = configparser.ConfigParser()
    config.read(ROOT / "luigi.cfg")
    sections = {**sections, "guard": {"min_available_mb": 0, "max_load_percent": 0,
                                      **sections.get("guard", {})}}
    for section, values in sections.items():
        if not config.has_section(section):
            config.add_section(section)
        for key, value in values.items():
            config.set(section, key, str(value))
    path = folder / "luigi.cfg"
    with open(path, "w") as handle:
        config.write(handle)
    return {**{k: v for k, v in os.environ.items() if k != "PIPELINE_RUN_TOKEN"},  # a run of its own
            "LUIGI_CONFIG_PATH": str(path), "PYTHONPATH": python_path(ROOT, TESTS),
            "PIPELINE_EXTRAS": os.environ.get("PIPELINE_EXTRAS", "test"),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def pipeline(args: list[str], env: dict[str, str], cwd: Path, **kwargs) -> subprocess.Popen:
    """Start ``python -m pipeline ARGS`` (stdout and stderr captured separately)."""
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def luigid(folder: Path, **sections: dict) -> Iterator[int]:
    """A luigid on a free port of 127.0.0.1 with ``sections`` as its config, state and log in ``folder``; its port."""
    folder.mkdir(parents=True, exist_ok=True)
    config = configparser.ConfigParser()
    config.read_dict(sections)
    with open(folder / "luigid.cfg", "w") as handle:
        config.write(handle)
    port = free_port()
    with open(folder / "luigid.log", "w") as log:
        server = subprocess.Popen([str(Path(sys.executable).parent / "luigid"), "--address", "127.0.0.1", "--port",
                                   str(port), "--state-path", str(folder / "state.pickle")], stdout=log, stderr=log,
                                  env={**os.environ, "LUIGI_CONFIG_PATH": str(folder / "luigid.cfg")})
    try:
        deadline = time.monotonic() + 30
        while not answers(port):
            assert server.poll() is None and time.monotonic() < deadline, (folder / "luigid.log").read_text()
            time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/task_list?data=%7B%7D", timeout=2).read()
        return True
    except OSError:
        return False
