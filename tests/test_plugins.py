"""Bring your own kind: plug-in readers, the command kind, and on_error/max_failures semantics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import ROOT, luigi_command, luigi_env, write_recipe

PLUGIN = '''
"""A plug-in kind: one row per line of a 'x,y,label' text file."""
import numpy as np
import pyarrow as pa
from pipeline.kinds.base import Setting


def read(path, settings):
    values = np.loadtxt(path, delimiter=",", ndmin=2)
    return {"X": values[:, :2] * settings["scale"], "label": values[:, 2].astype(np.int64)}


read.version = "2"
read.settings = {"scale": Setting(float, 1.0, help="multiplies the features")}


def read_table(path, settings):
    values = np.loadtxt(path, delimiter=",", ndmin=2)
    return pa.table({"x": values[:, 0], "y": values[:, 1], "label_label": values[:, 2].astype(np.int64),
                     "group": [path.stem] * len(values)})
'''

SCRIPT = '''
import sys, time
path = sys.argv[1]
log = sys.argv[2]
name = path.rsplit("/", 1)[-1]
with open(log, "a") as handle:
    handle.write(f"start {name}\\n")
text = open(path).read()
if "crash" in text:
    sys.stderr.write("something went wrong\\n" * 3 + "fatal: cannot parse " + name + "\\n")
    with open(log, "a") as handle:
        handle.write(f"FAIL {name}\\n")
    sys.exit(3)
if "hang" in text:
    time.sleep(60)
time.sleep(float(sys.argv[3]))
print(f'{{"name": "{name}", "chars": {len(text)}}}')
'''


def run(task: str, recipe: Path, *extra: str, path: Path | None = None):
    env = luigi_env()
    if path:
        env["PYTHONPATH"] = f"{path}{os.pathsep}{env['PYTHONPATH']}"
    return subprocess.run(luigi_command(task, recipe, *extra), env=env, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def points(folder: Path, files: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(files):
        np.savetxt(folder / f"p{i}.csv", np.column_stack([rng.random((5, 2)), rng.integers(0, 3, 5)]),
                   delimiter=",", fmt="%.6f")


def test_a_plug_in_function_from_a_module_runs_end_to_end(tmp_path):
    (tmp_path / "mykind.py").write_text(PLUGIN)
    points(tmp_path / "in", 6)
    recipe = write_recipe(
        tmp_path / "r.toml",
        dataset={"name": "points", "kind": "mykind:read", "input_dir": "in", "pattern": "*.csv", "output_dir": "out"},
        process={"scale": 10.0}, batch={"files_per_batch": 4})
    done = run("BuildDataset", recipe, path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    final = tmp_path / "out" / "final"
    x = np.concatenate([np.load(final / f"X_{s}.npy") for s in ("train", "val", "test")])
    raw = np.concatenate([np.loadtxt(p, delimiter=",") for p in sorted((tmp_path / "in").glob("*.csv"))])
    assert x.shape == (30, 2)
    assert np.allclose(np.sort(x[:, 0]), np.sort(raw[:, 0] * 10))
    assert json.loads((final / "stats.json").read_text())["files"]["processed"] == 6


def test_a_plug_in_returning_a_pyarrow_table_groups_by_its_column(tmp_path):
    (tmp_path / "mykind.py").write_text(PLUGIN)
    points(tmp_path / "in", 4)
    recipe = write_recipe(
        tmp_path / "r.toml",
        dataset={"name": "points", "kind": "mykind:read_table", "input_dir": "in", "output_dir": "out"})
    done = run("BuildDataset", recipe, path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    final = tmp_path / "out" / "final"
    with np.load(final / "labels_train.npz", allow_pickle=False) as labels:
        assert labels.files == ["label"]
    assert sum(len(np.load(final / f"X_{s}.npy")) for s in ("train", "val", "test")) == 20
    groups = json.loads((final / "stats.json").read_text())["groups"]
    assert sum(groups.values()) == 4, "one group per file, from the table's string column"


def command_recipe(tmp_path: Path, files: dict[str, str], sleep: float = 0.0, **process) -> Path:
    data = tmp_path / "in"
    data.mkdir(exist_ok=True)
    for name, text in files.items():
        (data / name).write_text(text)
    (tmp_path / "tool.py").write_text(SCRIPT)
    command = [sys.executable, str(tmp_path / "tool.py"), "{input}", str(tmp_path / "log.txt"), str(sleep)]
    return write_recipe(
        tmp_path / "r.toml",
        dataset={"name": "cmd", "kind": "command", "input_dir": "in", "output_dir": "out"},
        process={"command": command, **process}, batch={"files_per_batch": 3})


def test_the_command_kind_keeps_stdout_and_records_crashes_and_timeouts(tmp_path):
    recipe = command_recipe(tmp_path, {"a.txt": "hello", "b.txt": "crash", "c.txt": "hang", "d e.txt": "ok ü"},
                            timeout=2.0)
    done = run("BuildDataset", recipe)
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "out"
    assert json.loads((out / "files" / "a.txt.out").read_text()) == {"name": "a.txt", "chars": 5}
    assert json.loads((out / "files" / "d e.txt.out").read_text())["chars"] == 4
    stats = json.loads((out / "final" / "stats.json").read_text())
    failures = {f["file"]: f for f in stats["failures"]["records"]}
    assert set(failures) == {"b.txt", "c.txt"}
    assert "exited with code 3" in failures["b.txt"]["message"]
    assert "fatal: cannot parse b.txt" in failures["b.txt"]["message"]
    assert "timed out after 2 s" in failures["c.txt"]["message"]
    assert stats["files"] == {"discovered": 4, "processed": 2, "failed": 2}
    assert "4 files discovered, 2 processed" in done.stderr
    assert not (out / "files" / "c.txt.out").exists()


def test_on_error_fail_starts_no_new_file_after_the_first_failure(tmp_path):
    files = {f"f{i:02d}.txt": ("crash" if i % 3 == 1 else "fine") for i in range(24)}
    recipe = command_recipe(tmp_path, files, sleep=0.3, on_error="fail")
    done = run("BuildDataset", recipe, "--workers", "2")
    assert done.returncode == 30
    log = (tmp_path / "log.txt").read_text().splitlines()
    failed = [line.split()[1] for line in log if line.startswith("FAIL")]
    first = failed[0]
    assert any(f"{name}: CommandError: " in done.stderr for name in failed), "the error names the first failure"
    assert "exited with code 3" in done.stderr
    after = [line for line in log[log.index(f"FAIL {first}") + 1:] if line.startswith("start")]
    assert len(after) <= 1, f"files started after the first failure: {after}"
    assert len([line for line in log if line.startswith("start")]) <= 6


def test_max_failures_fails_the_run_once_too_many_files_fail(tmp_path):
    files = {f"f{i}.txt": ("crash" if i % 3 == 0 else "fine") for i in range(9)}
    recipe = command_recipe(tmp_path, files, max_failures=2)
    done = run("BuildDataset", recipe)
    assert done.returncode == 30
    assert "more than max_failures" in done.stderr
    relaxed = command_recipe(tmp_path, {}, max_failures=0.5)
    assert run("BuildDataset", relaxed).returncode == 0


def test_a_missing_program_is_a_clear_failure_tried_again_next_run(tmp_path):
    recipe = write_recipe(tmp_path / "r.toml",
                          dataset={"name": "x", "kind": "command", "input_dir": ".", "pattern": "*.toml",
                                   "output_dir": str(tmp_path.parent / (tmp_path.name + "-out"))},
                          process={"command": ["no-such-program-xyz", "{input}"]})
    done = run("BuildDataset", recipe)
    assert done.returncode == 0
    stats = json.loads((tmp_path.parent / (tmp_path.name + "-out") / "final" / "stats.json").read_text())
    assert stats["failures"]["records"][0]["error"] == "FileNotFoundError"
    assert "no-such-program-xyz" in stats["failures"]["records"][0]["message"]


def test_the_documented_plug_in_example_runs_as_written(tmp_path):
    doc = (ROOT / "docs" / "plugins.md").read_text()
    example = doc.split("```python")[1].split("```")[0]
    assert len(example.strip().splitlines()) < 30
    (tmp_path / "sensors.py").write_text(example)
    (tmp_path / "sessions").mkdir()
    (tmp_path / "sessions" / "s1.csv").write_text("t,temp,hum,label\n0,20.5,0.4,1\n1,21.0,0.5,0\n")
    (tmp_path / "sessions" / "s2.csv").write_text("t,temp,hum,label\n0,19.0,0.3,1\n1,oops,0.3,1\n")
    recipe_text = doc.split("```toml")[1].split("```")[0]
    (tmp_path / "sensors.toml").write_text(recipe_text)
    done = run("BuildDataset", tmp_path / "sensors.toml", path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    final = tmp_path / "out" / "sensors" / "final"
    x = np.concatenate([np.load(final / f"X_{s}.npy") for s in ("train", "val", "test")])
    assert np.allclose(np.sort(x[:, 1]), [292.15, 293.65, 294.15])
    stats = json.loads((final / "stats.json").read_text())
    assert [(f["file"], f["line"], f["error"]) for f in stats["failures"]["records"]] == [
        ("s2.csv", 3, "ValueError")]


def test_a_kind_registered_as_an_entry_point_is_found_by_name(tmp_path):
    (tmp_path / "mykind.py").write_text(PLUGIN)
    info = tmp_path / "mykind-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mykind\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pipeline.kinds]\npoints = mykind:read\n")
    points(tmp_path / "in", 3)
    recipe = write_recipe(
        tmp_path / "r.toml",
        dataset={"name": "points", "kind": "points", "input_dir": "in", "output_dir": "out"})
    done = run("BuildDataset", recipe, path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "final" / "stats.json").read_text())["rows"]["total"] == 15
