"""Shared fixtures: the real sample data, recipe writing, and running Luigi as users do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import toml

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = next((p / "shared" / "data" for p in ROOT.parents if (p / "shared" / "data").is_dir()),
                   ROOT.parent / "shared" / "data")  # beside the checkout, or above a worktree folder
os.environ.setdefault("LUIGI_CONFIG_PATH", str(ROOT / "luigi.cfg"))
START_METHOD = "PIPELINE_TEST_START_METHOD"
"""Set it (spawn, forkserver) to run the tests' pipeline runs with that multiprocessing start method."""


def python_path(*folders: Path) -> str:
    """PYTHONPATH of a run: ``folders``, and tests/start_method when START_METHOD is set."""
    chosen = [*folders, *([Path(__file__).parent / "start_method"] if os.environ.get(START_METHOD) else [])]
    return os.pathsep.join(str(folder) for folder in chosen)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the real sample data is missing: {SHARED_DATA}")
    return SHARED_DATA


def write_recipe(path: Path, **tables: dict) -> Path:
    """Write a recipe TOML made of ``tables`` (e.g. dataset={...}, split={...})."""
    path.write_text(toml.dumps(tables))
    return path


def outside_env() -> dict[str, str]:
    """This process's environment without its run token: a command started from here is a run of its own."""
    return {k: v for k, v in os.environ.items() if k != "PIPELINE_RUN_TOKEN"}


def luigi_env() -> dict[str, str]:
    return {**outside_env(), "LUIGI_CONFIG_PATH": str(ROOT / "luigi.cfg"), "PYTHONPATH": python_path(ROOT)}


def luigi_command(task: str, recipe: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "luigi", "--module", "pipeline", task, "--recipe", str(recipe),
            "--local-scheduler", *extra]


def run_luigi(task: str, recipe: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``luigi --module pipeline TASK --recipe RECIPE --local-scheduler`` as a user would."""
    return subprocess.run(luigi_command(task, recipe, *extra), env=luigi_env(), capture_output=True,
                          text=True, timeout=timeout)


def hex_recipe(tmp_path: Path, input_dir: Path, name: str = "hex", **overrides: dict) -> Path:
    """A trmph recipe over ``input_dir`` writing to ``tmp_path/out-<name>``."""
    tables = {
        "dataset": {"name": name, "kind": "trmph", "input_dir": str(input_dir), "pattern": "**/*.trmph",
                    "output_dir": str(tmp_path / f"out-{name}")},
        "process": {"position_selector": "all"},
        "batch": {"files_per_batch": 2},
        "split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 3},
    }
    for table, values in overrides.items():
        tables[table] = {**tables.get(table, {}), **values}
    return write_recipe(tmp_path / f"{name}.toml", **tables)
