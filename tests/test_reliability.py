"""Reliability: crashes at every stage, a bad-input corpus, corrupt intermediates, freshness,
write errors and concurrent runs. docs/reliability.md maps each guarantee to its test here."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, hex_recipe, luigi_command, luigi_env, run_luigi, write_recipe
from test_pipeline import final_bytes, temp_files
from test_plugins import command_recipe

from pipeline.engine import batches as batches_module
from pipeline.engine import frames
from pipeline.engine.plan import forget_plans, plan_for
from pipeline.engine.storage import TEMP_MARK, StorageError
from pipeline.recipe import load_recipe
from pipeline.synthetic.hex import write_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """80 files of 8 complete 13x13 games: about 60k positions, 20 MB of boards."""
    folder = tmp_path_factory.mktemp("hex") / "in"
    write_corpus(folder, files=80, games=8, size=13, seed=11)
    return folder


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("reference")
    recipe = hex_recipe(tmp, corpus, batch={"files_per_batch": 8})
    assert run_luigi("BuildDataset", recipe).returncode == 0
    return final_bytes(tmp / "out-hex")


def wait_for(condition, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.0005)
    return False


def temp_in(folder: Path):
    def found() -> bool:
        try:
            with os.scandir(folder) as entries:
                return any(TEMP_MARK in entry.name for entry in entries)
        except FileNotFoundError:
            return False
    return found


def frames_in_partials(out: Path) -> dict[str, int]:
    """Whole frames in each batch file being written (``batch_NNNN.frames.partial``)."""
    counts = {}
    for path in (out / "intermediate").glob("*.frames.partial"):
        try:
            counts[path.name.split(".")[0]] = len(frames.scan(io.BytesIO(path.read_bytes()))[0])
        except OSError:
            continue
    return counts


def frames_written(out: Path):
    """A batch file being written holds at least two whole frames."""
    return lambda: any(count >= 2 for count in frames_in_partials(out).values())


def task_started(out: Path, family: str):
    """A stage event: the task's run record appears in monitor/ when it starts."""
    return lambda: any((out / "monitor").glob(f"{family}*.json"))


def assert_no_partial_outputs(out: Path) -> None:
    """Everything under a final name is complete: batch files have their index and match their records."""
    for path in (out / "intermediate").glob("*.frames"):
        frames.read_index(path)
    for record in (out / "intermediate").glob("*.json"):
        outputs = json.loads(record.read_text())["outputs"]
        name = record.with_suffix(".frames").name
        assert outputs == {name: outputs[name]}
        assert (out / "intermediate" / name).stat().st_size == outputs[name]["size"]
    for stage in ("merged", "final"):
        manifest = out / stage / "manifest.json"
        if manifest.exists():
            json.loads(manifest.read_text())
    for path in (out / "final").glob("*.npy") if (out / "final").exists() else ():
        np.load(path, mmap_mode="r")


STAGES = {
    "processing files": lambda out: frames_written(out),
    "writing a batch": lambda out: lambda: any((out / "intermediate").glob("batch_*.frames")),  # the first in place
    "merging": lambda out: task_started(out, "MergeBatches"),  # it writes one small manifest, no rows
    "splitting": lambda out: temp_in(out / "final"),
}


@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "sigint"])
def test_interrupted_at_any_stage_the_rerun_is_byte_identical(tmp_path, corpus, reference, stage, sig):
    recipe = hex_recipe(tmp_path, corpus, batch={"files_per_batch": 8})
    out = tmp_path / "out-hex"
    if stage in ("merging", "splitting"):
        assert run_luigi("BuildBatches", recipe).returncode == 0
    if stage == "splitting":
        assert run_luigi("MergeBatches", recipe).returncode == 0
    run = subprocess.Popen(luigi_command("BuildDataset", recipe, "--streaming-chunk-mb", "1"), env=luigi_env(),
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    assert wait_for(STAGES[stage](out)), f"never saw the run {stage}"
    os.killpg(run.pid, sig)
    run.wait(timeout=60)
    if run.poll() is None:  # a SIGINT that left the run going
        os.killpg(run.pid, signal.SIGKILL)
    assert not (out / "final" / "manifest.json").exists()
    assert_no_partial_outputs(out)
    in_flight = frames_in_partials(out)
    done = run_luigi("BuildDataset", recipe)
    assert done.returncode == 0, done.stderr[-3000:]
    assert final_bytes(out) == reference
    for batch, kept in in_flight.items():  # a kill mid-batch redoes at most the file in flight
        assert json.loads((out / "intermediate" / f"{batch}.json").read_text())["facts"]["files_reused"] == kept
    assert temp_files(out) == []


def corpus_of_bad_inputs(folder: Path, good: str) -> int:
    """Every kind of bad input next to good files; returns how many files discovery should list."""
    (folder / "sub").mkdir(parents=True)
    (folder / "other").mkdir()
    (folder / "good.txt").write_text(good + "\n")
    (folder / "sub" / "good.txt").write_text(good + "\n")  # same stem in another folder
    (folder / "other" / "good.txt").write_text(good + "\n")
    (folder / "names with spaces ünï.txt").write_text(good + "\n")
    (folder / "crlf.txt").write_bytes((good + "\r\n").encode())
    (folder / "bom.txt").write_bytes(b"\xef\xbb\xbf" + (good + "\n").encode())
    (folder / "empty.txt").write_text("")
    (folder / "garbage.txt").write_bytes(os.urandom(4096))
    (folder / "truncated.txt").write_text(good + "\n" + good[: len(good) // 2])
    (folder / "utf16.txt").write_text(good + "\n", encoding="utf-16")
    (folder / "long line.txt").write_text("#13," + "a1" * 2_000_000 + " b\n")
    (folder / "dangling.txt").symlink_to(folder / "does-not-exist")
    (folder / "sub" / "loop").symlink_to(folder, target_is_directory=True)
    return 12


def test_the_bad_input_corpus_is_accounted_for_file_by_file(tmp_path, shared_data):
    good = (shared_data / "hex" / "selfplay_sample.trmph").read_text().splitlines()[0]
    expected = corpus_of_bad_inputs(tmp_path / "in", good)
    recipe = hex_recipe(tmp_path, tmp_path / "in", dataset={"pattern": "**/*.txt"}, batch={"files_per_batch": 4})
    done = run_luigi("BuildDataset", recipe)
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads((tmp_path / "out-hex" / "final" / "stats.json").read_text())
    files = stats["files"]
    assert files["discovered"] == expected == files["processed"] + files["failed"]
    reasons = {(f["file"], f["error"]) for f in stats["failures"]["records"]}
    assert {("empty.txt", "ValueError"), ("garbage.txt", "NotTextError"), ("utf16.txt", "NotTextError"),
            ("dangling.txt", "NotAFile"), ("truncated.txt", "MissingWinner")} == reasons
    assert [(w["file"], w["error"]) for w in stats["warnings"]["records"]] == [("long line.txt", "RepeatedMove")]
    assert files["processed"] == 8
    assert stats["records"]["processed"] == 8, ("good, its two namesakes, spaces, CRLF, BOM, truncated's first line, "
                                                "the long line cut at its repeat")
    assert stats["groups"]["train"] + stats["groups"]["val"] + stats["groups"]["test"] == 2, "the game, and a1"


def test_unreadable_and_vanished_files_are_recorded_and_retried(tmp_path, shared_data, monkeypatch):
    data = tmp_path / "in"
    data.mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(shared_data / "hex" / "selfplay_sample.trmph", data / f"{name}.trmph")
    recipe = load_recipe(hex_recipe(tmp_path, data, batch={"files_per_batch": 3}))
    forget_plans()
    plan = plan_for(recipe)
    (data / "b.trmph").unlink()  # deleted between discovery and processing
    read_bytes = Path.read_bytes

    def unreadable(path: Path) -> bytes:  # root reads anything, so permission is denied here
        if path.name == "c.trmph":
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    record = batches_module.build_batch(plan, plan.batches[0])
    errors = {f["file"]: f for f in record["failures"]}
    assert {name: f["error"] for name, f in errors.items()} == {
        "b.trmph": "FileNotFoundError", "c.trmph": "PermissionError"}
    assert "Permission denied" in errors["c.trmph"]["message"]
    assert record["files"] == 3 and record["files_failed"] == 2
    with open(plan.layout.batch(0), "rb") as handle:
        kept = [frame.meta["file"] for frame in frames.scan(handle)[0]]
    assert kept == ["a.trmph"], "an OS error is tried again next run"
    monkeypatch.undo()
    forget_plans()
    again = batches_module.build_batch(plan, plan.batches[0])
    assert [f["file"] for f in again["failures"]] == ["b.trmph"] and again["files_reused"] == 1


def test_a_damaged_batch_file_keeps_its_frames_before_the_damage(tmp_path):
    write_corpus(tmp_path / "in", files=4, games=2, size=5, seed=12)
    recipe = hex_recipe(tmp_path, tmp_path / "in", process={"board_size": 5}, batch={"files_per_batch": 4})
    out = tmp_path / "out-hex"
    assert run_luigi("BuildDataset", recipe).returncode == 0
    first = final_bytes(out)
    batch = out / "intermediate" / "batch_0000.frames"
    with open(batch, "rb") as handle:
        found, _ = frames.scan(handle)
    damaged = bytearray(batch.read_bytes())
    damaged[found[1].offset + found[1].size - 5] ^= 0x01  # in the second file's rows
    batch.write_bytes(bytes(damaged))
    shutil.rmtree(out / "final")  # the split runs again, and verifies the batches it reads
    assert run_luigi("BuildDataset", recipe).returncode == 0
    record = json.loads((out / "intermediate" / "batch_0000.json").read_text())
    assert record["facts"]["files_reused"] == 1, "the frame before the damage is kept, the rest read again"
    assert final_bytes(out) == first


def test_freshness_rebuilds_exactly_what_a_change_affects(tmp_path):
    write_corpus(tmp_path / "in", files=6, games=2, size=5, seed=13)
    base = {"process": {"board_size": 5}, "batch": {"files_per_batch": 2}}
    recipe = hex_recipe(tmp_path, tmp_path / "in", **base)
    out = tmp_path / "out-hex"
    assert run_luigi("BuildDataset", recipe).returncode == 0

    def stamps(pattern: str) -> dict[str, int]:
        return {str(p): p.stat().st_mtime_ns for p in out.glob(pattern)}

    batches, merged = stamps("intermediate/*"), stamps("merged/*")
    hex_recipe(tmp_path, tmp_path / "in", **base, split={"seed": 99})
    status = subprocess.run(luigi_command("Status", recipe), env=luigi_env(), capture_output=True, text=True)
    assert "batches: 3 up to date" in status.stdout and "merged: up to date" in status.stdout
    assert "final: stale" in status.stdout
    assert run_luigi("BuildDataset", recipe).returncode == 0
    assert (stamps("intermediate/*"), stamps("merged/*")) == (batches, merged)

    hex_recipe(tmp_path, tmp_path / "in", **{**base, "process": {"board_size": 5, "position_selector": "final"}})
    status = subprocess.run(luigi_command("Status", recipe), env=luigi_env(), capture_output=True, text=True)
    assert "batches: 3 stale" in status.stdout
    assert run_luigi("BuildDataset", recipe).returncode == 0
    for record in out.glob("intermediate/*.json"):
        assert json.loads(record.read_text())["facts"]["files_reused"] == 0, "a process setting rebuilds every file"
    assert json.loads((out / "final" / "stats.json").read_text())["rows"]["total"] == 12


def test_a_failing_write_leaves_no_partial_output_and_a_rerun_completes(tmp_path, monkeypatch):
    write_corpus(tmp_path / "in", files=4, games=2, size=5, seed=14)
    recipe = load_recipe(hex_recipe(tmp_path, tmp_path / "in", process={"board_size": 5},
                                    batch={"files_per_batch": 4}))
    forget_plans()
    plan = plan_for(recipe)

    def broken(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(frames, "finish", broken)
    with pytest.raises(StorageError, match=r"writing .*batch_0000.frames failed: Input/output error"):
        batches_module.build_batch(plan, plan.batches[0])
    intermediate = tmp_path / "out-hex" / "intermediate"
    assert sorted(p.name for p in intermediate.iterdir()) == ["batch_0000.frames.partial"], "nothing under its name"
    monkeypatch.undo()
    record = batches_module.build_batch(plan, plan.batches[0])
    assert sorted(p.name for p in intermediate.iterdir()) == ["batch_0000.frames", "batch_0000.json"]
    assert record["files_reused"] == 4, "the frames written before the error are kept"


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3M", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_disk_full_is_reported_with_the_path_and_a_rerun_after_freeing_space_completes(tmp_path, small_disk, corpus,
                                                                                       reference):
    recipe = write_recipe(tmp_path / "r.toml", **{
        "dataset": {"name": "hex", "kind": "trmph", "input_dir": str(corpus), "pattern": "**/*.trmph",
                    "output_dir": str(small_disk / "out")},
        "process": {"position_selector": "all"}, "batch": {"files_per_batch": 8},
        "split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 3}})
    full = run_luigi("BuildDataset", recipe)
    assert full.returncode == 30
    assert "No space left on device" in full.stderr and "failed: writing " in full.stderr
    assert_no_partial_outputs(small_disk / "out")
    subprocess.run(["mount", "-o", "remount,size=256M", str(small_disk)], check=True)
    done = run_luigi("BuildDataset", recipe)
    assert done.returncode == 0, done.stderr[-2000:]
    assert final_bytes(small_disk / "out") == reference
    assert temp_files(small_disk / "out") == []


def test_two_local_runs_at_once_never_corrupt_outputs(tmp_path, corpus, reference):
    recipe = hex_recipe(tmp_path, corpus, batch={"files_per_batch": 8})
    command = luigi_command("BuildDataset", recipe, "--workers", "2", "--no-lock")  # Luigi's lock would refuse #2
    runs = [subprocess.Popen(command, env=luigi_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    results = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [r[1][-2000:] for r in results]
    out = tmp_path / "out-hex"
    assert final_bytes(out) == reference
    assert temp_files(out) == []
    assert_no_partial_outputs(out)


def test_the_randomised_crash_soak_runs(tmp_path):
    """A random moment, then the report stage as it writes (the second run's kill is triggered by its first file)."""
    soak = subprocess.run([sys.executable, str(ROOT / "scripts" / "crash-soak"), "--runs", "2", "--seed", "1",
                           "--scratch", str(tmp_path)], env=luigi_env(), capture_output=True, text=True, timeout=600)
    assert soak.returncode == 0, soak.stdout[-2000:] + soak.stderr[-2000:]
    assert "2 of 2 re-runs identical" in soak.stdout
    assert "run 1: SIGKILL writing report/" in soak.stdout


def test_two_runs_against_one_luigid_do_each_piece_of_work_once(tmp_path):
    files = {f"f{i:02d}.txt": "fine" for i in range(12)}
    recipe = command_recipe(tmp_path, files, sleep=0.2)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    env = {**luigi_env(), "PIPELINE_LUIGID_DIR": str(tmp_path / "luigid")}
    luigid = str(ROOT / "scripts" / "luigid")
    assert subprocess.run([luigid, "start", "--port", port], env=env, capture_output=True, timeout=60).returncode == 0
    try:
        command = [sys.executable, "-m", "luigi", "--module", "pipeline", "BuildDataset", "--recipe", str(recipe),
                   "--scheduler-port", port, "--workers", "2", "--no-lock"]
        runs = [subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True) for _ in range(2)]
        errors = [run.communicate(timeout=300)[1] for run in runs]
    finally:
        subprocess.run([luigid, "stop", "--port", port], env=env, capture_output=True, timeout=60)
    # Luigi exits 10 (run by another worker) or 25 (not run) for the run that found its work taken: never 30.
    assert {run.returncode for run in runs} <= {0, 10, 25}, [e[-2000:] for e in errors]
    started = [line.split()[1] for line in (tmp_path / "log.txt").read_text().splitlines() if line.startswith("start")]
    assert sorted(started) == sorted(files), "every file was processed exactly once across both runs"
    done = run_luigi("BuildDataset", recipe)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "final" / "stats.json").read_text())["files"]["processed"] == len(files)
    assert len((tmp_path / "log.txt").read_text().splitlines()) == len(files), "the check ran nothing again"
