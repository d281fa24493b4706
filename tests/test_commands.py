"""Operating it: exit codes from any folder, signals, status and cleanup without a scheduler, errors that say why."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import luigi
import numpy as np
import psutil
import pytest
from conftest import SHARED_DATA
from conftest import write_recipe as write_tables
from runs import HEX, ROOT, TESTS, environment, pipeline, write_recipe
from test_ticks import build_in_process, synthetic
from test_ticks import recipe as ticks_recipe

from pipeline import exitcodes
from pipeline.__main__ import main
from pipeline.engine import frames
from pipeline.engine.explain import EmptySplitError, check_splits
from pipeline.engine.merge import MergeError, merge_batches
from pipeline.engine.plan import forget_plans, plan_for
from pipeline.engine.splitting import assign_splits
from pipeline.exitcodes import RETCODES, set_retcode_defaults
from pipeline.recipe import load_recipe
from pipeline.synthetic.hex import write_corpus
from pipeline.tasks import BuildBatches, BuildDataset, Cleanup, SplitDataset

BROKEN = "#13,a1b2zz9 b\n"


def build(task: type, recipe: Path) -> bool:
    """Run ``task`` in-process with the local scheduler."""
    forget_plans()
    return luigi.build([task(recipe=str(recipe))], local_scheduler=True, workers=1, log_level="WARNING")


def with_broken_file(tmp_path: Path, on_error: str) -> Path:
    inputs = tmp_path / "in"
    shutil.copytree(HEX, inputs)
    (inputs / "broken.trmph").write_text(BROKEN)
    recipe = write_recipe(tmp_path, inputs, on_error=on_error)
    text = recipe.read_text().replace('output_dir = "out"', f'output_dir = "{tmp_path / "out"}"')
    recipe.write_text(text)
    return recipe


def elsewhere_env() -> dict[str, str]:
    """A run started from another folder: no LUIGI_CONFIG_PATH, no luigi.cfg in the current folder."""
    env = {key: value for key, value in os.environ.items() if key != "LUIGI_CONFIG_PATH"}
    return {**env, "PYTHONPATH": f"{ROOT}:{TESTS}"}


# --- exit codes -------------------------------------------------------------------------------------------------

def test_retcode_defaults_fill_in_what_no_config_sets():
    config = configparser.ConfigParser()
    config.read_string("[retcode]\ntask_failed = 7\n")
    set_retcode_defaults(config)
    assert config.getint("retcode", "task_failed") == 7, "a user's own setting wins"
    assert {key: config.getint("retcode", key) for key in RETCODES if key != "task_failed"} == {
        key: code for key, code in RETCODES.items() if key != "task_failed"}
    empty = configparser.ConfigParser()
    set_retcode_defaults(empty)
    assert dict(empty["retcode"]) == {key: str(code) for key, code in RETCODES.items()}
    codes = {exitcodes.SUCCESS, exitcodes.USAGE, exitcodes.NOT_BUILT, exitcodes.SKIPPED_FILES, *RETCODES.values(),
             exitcodes.interrupted(signal.SIGINT), exitcodes.interrupted(signal.SIGTERM)}
    assert len(codes) == 4 + len(RETCODES) + 2, "every outcome has its own code"


@pytest.mark.parametrize("entry", ["python -m pipeline", "luigi --module pipeline"])
def test_a_failing_run_started_from_another_folder_exits_30(tmp_path, entry):
    recipe = with_broken_file(tmp_path, on_error="fail")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = [sys.executable, "-m", *(["pipeline"] if entry.startswith("python") else ["luigi", "--module",
                                                                                      "pipeline"])]
    run = subprocess.run([*command, "BuildDataset", "--recipe", str(recipe), "--local-scheduler"], cwd=elsewhere,
                         env=elsewhere_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == RETCODES["task_failed"], run.stderr[-2000:]
    assert "broken.trmph" in run.stderr


def test_a_complete_build_that_left_files_out_exits_5_every_time(tmp_path):
    recipe = with_broken_file(tmp_path, on_error="skip")
    for _ in range(2):  # the build, then a run with nothing to do: still an alert until the input is fixed
        run = subprocess.run([sys.executable, "-m", "pipeline", "BuildDataset", "--recipe", str(recipe),
                              "--local-scheduler"], cwd=tmp_path, env=elsewhere_env(), capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == exitcodes.SKIPPED_FILES, run.stderr[-2000:]
        assert "ops is built, but 1 input files failed and were left out" in run.stderr
    (tmp_path / "in" / "broken.trmph").unlink()
    fixed = subprocess.run([sys.executable, "-m", "pipeline", "BuildDataset", "--recipe", str(recipe),
                            "--local-scheduler"], cwd=tmp_path, env=elsewhere_env(), capture_output=True,
                           text=True, timeout=120)
    assert fixed.returncode == 0, fixed.stderr[-2000:]


def test_a_command_recipe_failing_every_file_does_not_exit_0(tmp_path):
    (tmp_path / "in").mkdir()
    for name in "abc":
        (tmp_path / "in" / f"{name}.txt").write_text(name)
    recipe = write_tables(tmp_path / "cmd.toml",
                          dataset={"name": "cmd", "kind": "command", "input_dir": str(tmp_path / "in"),
                                   "pattern": "*.txt", "output_dir": str(tmp_path / "out")},
                          process={"command": [str(tmp_path / "no-such-program"), "{input}"]})
    run = subprocess.run([sys.executable, "-m", "pipeline", "BuildDataset", "--recipe", str(recipe),
                          "--local-scheduler"], cwd=tmp_path, env=elsewhere_env(), capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == exitcodes.SKIPPED_FILES, run.stderr[-2000:]
    assert "cmd is built, but 3 input files failed" in run.stderr


# --- signals ----------------------------------------------------------------------------------------------------

def slow_recipe(tmp_path: Path) -> Path:
    write_corpus(tmp_path / "in", files=8, games=2)
    return write_recipe(tmp_path, tmp_path / "in", kind="slow_trmph:KIND", files_per_batch=2)


def wait_for_a_running_batch(run: subprocess.Popen, monitor: Path) -> list[psutil.Process]:
    """Wait until a batch's run record says it is running; the run's processes then."""
    deadline = time.monotonic() + 60
    while True:
        records = [json.loads(p.read_text()) for p in monitor.glob("ProcessBatch*.json")] if monitor.is_dir() else []
        if any(record["state"] == "running" for record in records):
            break
        assert run.poll() is None and time.monotonic() < deadline, "the run never started a batch"
        time.sleep(0.05)
    return [psutil.Process(run.pid), *psutil.Process(run.pid).children(recursive=True)]


@pytest.mark.parametrize(("entry", "sig", "to_group"), [
    ("python -m pipeline", signal.SIGINT, True),   # Ctrl-C in a terminal: every process of the group gets it
    ("python -m pipeline", signal.SIGTERM, False),  # kill PID: only the main process gets it
    ("luigi --module pipeline", signal.SIGTERM, False),
])
def test_a_signal_stops_every_worker_in_one_line_and_the_run_resumes(tmp_path, entry, sig, to_group):
    recipe = slow_recipe(tmp_path)
    env = {**environment(tmp_path), "SLOW_TRMPH_SECONDS": "0.4", "PYTHONPATH": f"{ROOT}:{TESTS}"}
    args = ["BuildDataset", "--recipe", str(recipe), "--local-scheduler", "--workers", "2"]
    command = [sys.executable, "-m", *(["pipeline"] if entry.startswith("python") else ["luigi", "--module",
                                                                                      "pipeline"]), *args]
    run = subprocess.Popen(command, cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, start_new_session=True)
    processes = wait_for_a_running_batch(run, tmp_path / "out" / "monitor")
    assert len(processes) >= 2, "the batch runs in a worker process of its own"
    if to_group:
        os.killpg(run.pid, sig)
    else:
        run.send_signal(sig)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 128 + sig, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    [line] = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert line.startswith(f"interrupted by {signal.Signals(sig).name} after ")
    assert line.endswith(" tasks of this run; run the same command to resume")
    done, total = (int(n) for n in line.split(" after ")[1].split(" tasks")[0].split(" of "))
    assert done < total
    gone, alive = psutil.wait_procs(processes, timeout=10)
    assert not alive, f"still running: {alive}"
    assert not (tmp_path / "out" / "final" / "manifest.json").exists()
    resumed = pipeline(args, {**env, "SLOW_TRMPH_SECONDS": "0"}, tmp_path)
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err[-2000:]
    assert json.loads((tmp_path / "out" / "final" / "stats.json").read_text())["files"]["processed"] == 8


# --- status and cleanup without a scheduler --------------------------------------------------------------------

def test_status_and_cleanup_of_a_files_build(tmp_path, capsys):
    recipe = write_recipe(tmp_path, HEX)
    assert main(["status", str(recipe)]) == exitcodes.NOT_BUILT
    assert "final: missing" in capsys.readouterr().out
    assert main(["cleanup", str(recipe)]) == exitcodes.NOT_BUILT
    assert "run BuildDataset before Cleanup" in capsys.readouterr().err
    assert build(BuildDataset, recipe)
    assert main(["status", str(recipe)]) == exitcodes.SUCCESS
    out = capsys.readouterr().out
    assert "batches: 2 up to date" in out and "final: up to date" in out and "built: nothing to run" in out
    sizes = {name: sum(p.stat().st_size for p in (tmp_path / "out" / name).rglob("*") if p.is_file())
             for name in ("intermediate", "merged")}
    assert main(["cleanup", str(recipe)]) == exitcodes.SUCCESS
    out = capsys.readouterr().out
    for name, size in sizes.items():
        assert f"removed {name}/: {size} bytes" in out
        assert not (tmp_path / "out" / name).exists()
    assert f"freed {sum(sizes.values())} bytes" in out
    assert main(["status", str(recipe)]) == exitcodes.SUCCESS, "the build is still complete"
    assert main(["cleanup", str(recipe)]) == exitcodes.SUCCESS
    assert "nothing to remove" in capsys.readouterr().out
    assert build(Cleanup, recipe), "the Cleanup task agrees"


def test_status_and_cleanup_of_a_ticks_build(tmp_path, capsys):
    synthetic(tmp_path, days=6, rows=6000)
    path = ticks_recipe(tmp_path, "*.parquet", intervals=[5], lookbacks=[1, 2], chunk_size="weekly")
    assert main(["status", str(path)]) == exitcodes.NOT_BUILT
    assert "chunks: 1 missing" in capsys.readouterr().out
    run, metadata = build_in_process(path)
    assert build(BuildDataset, path)  # the report, on the complete flow
    results = len(metadata["chunks"]) * len(run.universes)
    assert main(["status", str(path)]) == exitcodes.SUCCESS
    out = capsys.readouterr().out
    assert f"results (chunk × universe): {results} up to date" in out
    assert f"universes consolidated: {len(run.universes)} up to date" in out and "final (overall): 1 up to date" in out
    size = sum(p.stat().st_size for p in (tmp_path / "out" / "results").rglob("*") if p.is_file())
    assert main(["cleanup", str(path)]) == exitcodes.SUCCESS
    out = capsys.readouterr().out
    assert f"removed results/ ({results} chunk × universe analyses" in out and f": {size} bytes" in out
    assert not list((tmp_path / "out" / "results").rglob("*.parquet"))
    assert main(["status", str(path)]) == exitcodes.SUCCESS
    assert f"results (chunk × universe): {results} missing" in capsys.readouterr().out
    assert build(BuildDataset, path), "nothing to rebuild after Cleanup"


def test_status_and_cleanup_of_a_command_build(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    for name in ("a", "b", "c"):
        (tmp_path / "in" / f"{name}.txt").write_text(name * 10)
    path = write_tables(tmp_path / "cmd.toml",
                        dataset={"name": "cmd", "kind": "command", "input_dir": str(tmp_path / "in"),
                                 "pattern": "*.txt", "output_dir": str(tmp_path / "out")},
                        process={"command": ["wc", "-c", "{input}"]}, batch={"files_per_batch": 2})
    assert main(["status", str(path)]) == exitcodes.NOT_BUILT
    assert build(BuildDataset, path)
    assert main(["status", str(path)]) == exitcodes.SUCCESS
    out = capsys.readouterr().out
    assert "batches: 2 up to date" in out and "summary (final/stats.json): up to date" in out
    assert "report: up to date" in out
    results = sorted(p.name for p in (tmp_path / "out" / "files").iterdir())
    size = sum(p.stat().st_size for p in (tmp_path / "out" / "intermediate").iterdir())
    assert main(["cleanup", str(path)]) == exitcodes.SUCCESS
    assert f"removed batches (files and records): {size} bytes" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out" / "files").iterdir()) == results, "the per-file results stay"
    assert main(["status", str(path)]) == exitcodes.SUCCESS, "still built: the summary is the flow's end"


def test_status_and_cleanup_refuse_in_one_line(tmp_path, capsys):
    assert main(["status"]) == exitcodes.USAGE
    assert "error: status takes one argument, the recipe" in capsys.readouterr().err
    assert main(["status", str(tmp_path)]) == exitcodes.USAGE
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path}: cannot read recipe: Is a directory; a recipe is a TOML file\n"
    (tmp_path / "binary.toml").write_bytes(bytes(range(256)))
    assert main(["cleanup", str(tmp_path / "binary.toml")]) == exitcodes.USAGE
    assert "this one is binary" in capsys.readouterr().err
    ptv = tmp_path / "ptv.toml"
    ptv.write_text((ROOT / "samples" / "ptv.toml").read_text()
                   .replace("../../shared/data", str(SHARED_DATA)).replace("../out", str(tmp_path)))
    assert main(["cleanup", str(ptv)]) == exitcodes.USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Cleanup does not apply to flow 'ptv'" in err


# --- errors that say why --------------------------------------------------------------------------------------

def test_no_rows_names_the_folder_the_pattern_and_the_top_reasons(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        (inputs / f"bad{i}.trmph").write_text(BROKEN)
    (inputs / "short.trmph").write_text("garbage\n")
    recipe = write_recipe(tmp_path, inputs)
    assert build(BuildBatches, recipe)
    with pytest.raises(MergeError) as error:
        merge_batches(plan_for(load_recipe(recipe)))
    lines = str(error.value).splitlines()
    assert lines[0] == f"no rows: all 4 input files under {inputs} matching '**/*.trmph' failed; top reasons:"
    assert lines[1] == "  3 × IllegalCoordinate, first: bad0.trmph:1: IllegalCoordinate: illegal coordinate 'z'"
    assert lines[2].startswith("  1 × MissingWinner, first: short.trmph:1: MissingWinner: ")
    (tmp_path / "empty").mkdir()
    recipe = write_recipe(tmp_path, tmp_path / "empty")
    assert build(BuildBatches, recipe)
    with pytest.raises(MergeError, match=r"no rows: no input files under .*/empty matching '\*\*/\*\.trmph'; check"):
        merge_batches(plan_for(load_recipe(recipe)))


def one_group_recipe(tmp_path: Path, split: int) -> Path:
    """A recipe over one game file (one group) whose seed puts that group in split ``split``."""
    inputs = tmp_path / "in"
    inputs.mkdir(exist_ok=True)
    (inputs / "one.trmph").write_text((HEX / "selfplay_sample.trmph").read_text().splitlines()[0] + "\n")
    recipe = write_recipe(tmp_path, inputs)
    forget_plans()
    plan = plan_for(load_recipe(recipe))
    assert build(BuildBatches, recipe)
    path = plan.layout.batch(0)
    [group] = np.unique(np.concatenate(list(frames.iter_array(path, frames.read_index(path), "group", 1000))))
    seed = next(seed for seed in range(100) if assign_splits(np.array([group], dtype=np.uint64),
                                                             {"train": 0.6, "val": 0.2, "seed": seed})[0] == split)
    recipe.write_text(recipe.read_text() + f"\n[split]\ntrain = 0.6\nval = 0.2\ntest = 0.2\nseed = {seed}\n")
    return recipe


def test_an_empty_train_split_is_an_error_and_writes_nothing(tmp_path):
    recipe = one_group_recipe(tmp_path, split=1)
    assert not build(SplitDataset, recipe)
    assert not (tmp_path / "out" / "final" / "manifest.json").exists()
    plan = plan_for(load_recipe(recipe))
    with pytest.raises(EmptySplitError, match="split 'train' of ops is empty: its fraction 0.6 of 1"):
        check_splits(plan, {"train": 0, "val": 1, "test": 0}, print)


def test_an_empty_val_or_test_split_is_a_warning_naming_it(tmp_path, caplog):
    recipe = one_group_recipe(tmp_path, split=0)
    assert build(SplitDataset, recipe)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "is empty" in r.getMessage()]
    assert [message.split(" of ops")[0] for message in warned] == ["split 'val'", "split 'test'"]
    plan = plan_for(load_recipe(recipe))
    said = []
    check_splits(plan, {"train": 5, "val": 0, "test": 3}, said.append)
    assert len(said) == 1 and said[0].startswith("split 'val' of ops is empty")
