"""Failure semantics: bad input is remembered as a file's result; a code or OS error is tried again."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
from conftest import ROOT, luigi_command, luigi_env, write_recipe

KIND = '''
"""A plug-in kind: 'x,y,label' lines; BUGGY=1 makes it fail on p1 as a bug would."""
import os
import numpy as np


def read(path, settings):
    if path.name == "p1.csv" and os.environ.get("BUGGY") == "1":
        return {"X": None + 1}
    if path.name == "p2.csv" and os.environ.get("UNREADABLE") == "1":
        raise PermissionError(13, "Permission denied", str(path))
    if path.name == "bad.csv":
        raise ValueError("not three numbers per line")
    values = np.loadtxt(path, delimiter=",", ndmin=2)
    return {"X": values[:, :2], "label": values[:, 2].astype(np.int64)}
'''


def build(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**luigi_env(), **env}
    environment["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{environment['PYTHONPATH']}"
    return subprocess.run(luigi_command("BuildDataset", tmp_path / "r.toml"), env=environment, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def setup(tmp_path: Path) -> Path:
    (tmp_path / "flaky.py").write_text(KIND)
    data = tmp_path / "in"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        np.savetxt(data / f"p{i}.csv", np.column_stack([rng.random((5, 2)), rng.integers(0, 3, 5)]),
                   delimiter=",", fmt="%.6f")
    (data / "bad.csv").write_text("1,2\n")
    write_recipe(tmp_path / "r.toml",
                 dataset={"name": "flaky", "kind": "flaky:read", "input_dir": str(data), "pattern": "*.csv",
                          "output_dir": str(tmp_path / "out")},
                 batch={"files_per_batch": 2})
    return tmp_path / "out" / "final" / "stats.json"


def test_a_code_error_is_not_cached_and_the_fixed_file_is_processed_next_run(tmp_path):
    stats_path = setup(tmp_path)
    first = build(tmp_path, BUGGY="1")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "p1.csv: a code error, not bad input (TypeError" in first.stderr
    stats = json.loads(stats_path.read_text())
    assert stats["files"] == {"discovered": 5, "processed": 3, "failed": 2}
    assert stats["failures"]["to_retry"] == {"code error": 1}
    second = build(tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    stats = json.loads(stats_path.read_text())
    assert stats["files"] == {"discovered": 5, "processed": 4, "failed": 1}, "the fixed file is tried again"
    assert [f["file"] for f in stats["failures"]["records"]] == ["bad.csv"], "bad input stays failed"
    assert stats["processing"]["files_reused"] == 1, "only p1's batch is redone, and its p2 is reused"
    third = build(tmp_path)
    assert third.returncode == 0 and "ran successfully" not in third.stderr, "nothing left to try again"


def test_an_os_error_is_tried_again_once_the_file_is_readable(tmp_path):
    stats_path = setup(tmp_path)
    assert build(tmp_path, UNREADABLE="1").returncode == 0
    stats = json.loads(stats_path.read_text())
    assert stats["failures"]["to_retry"] == {"os error": 1}
    assert {f["file"]: f["error"] for f in stats["failures"]["records"]} == {
        "bad.csv": "ValueError", "p2.csv": "PermissionError"}
    assert build(tmp_path).returncode == 0
    stats = json.loads(stats_path.read_text())
    assert stats["files"]["processed"] == 4 and stats["failures"]["to_retry"] == {}


def test_a_changed_reader_without_a_version_bump_rebuilds(tmp_path):
    stats_path = setup(tmp_path)
    assert build(tmp_path).returncode == 0
    assert build(tmp_path).stderr.count("ran successfully") == 0
    with open(tmp_path / "flaky.py", "a") as handle:
        handle.write("# the reader changed\n")
    again = build(tmp_path)
    assert again.returncode == 0 and "ran successfully" in again.stderr
    assert json.loads(stats_path.read_text())["processing"]["files_reused"] == 0, "every file read again"
