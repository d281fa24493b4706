"""Damaged outputs are found by their stage records and rebuilt; corrupt rows never reach final/."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import luigi
import pytest
from conftest import hex_recipe, run_luigi

from pipeline.engine.plan import forget_plans
from pipeline.engine.storage import HOST, TEMP_MARK
from pipeline.tasks import BuildDataset, Cleanup, Status

SPLITS = ("train", "val", "test")


def build(recipe: Path, task: type = BuildDataset, **params) -> bool:
    forget_plans()
    return luigi.build([task(recipe=str(recipe), **params)], local_scheduler=True, workers=1, log_level="WARNING")


def final_bytes(out: Path) -> dict[str, bytes]:
    """Every final array file's bytes (stats.json, with its timings, and the manifest left out)."""
    return {p.name: p.read_bytes() for p in sorted((out / "final").iterdir()) if p.suffix in (".npy", ".npz")}


def flip_byte(path: Path, keep_mtime: bool) -> None:
    """Change one byte near the end of ``path`` in place; ``keep_mtime`` hides it as bit rot would."""
    stat = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(stat.st_size - 3)
        byte = handle.read(1)
        handle.seek(stat.st_size - 3)
        handle.write(bytes([byte[0] ^ 0x55]))
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.fixture(scope="module")
def clean(tmp_path_factory, shared_data):
    """A clean build of the Hex sample with seed 3 and one with seed 4, for comparison."""
    results = {}
    for seed in (3, 4):
        folder = tmp_path_factory.mktemp(f"clean{seed}")
        assert build(hex_recipe(folder, shared_data / "hex", split={"seed": seed}))
        results[seed] = final_bytes(folder / "out-hex")
    return results


@pytest.mark.parametrize("keep_mtime", [False, True], ids=["written", "bit-rot"])
def test_a_damaged_batch_is_rebuilt_never_split(tmp_path, shared_data, clean, keep_mtime):
    recipe = hex_recipe(tmp_path, shared_data / "hex", batch={"files_per_batch": 1})
    out = tmp_path / "out-hex"
    assert build(recipe)
    flip_byte(out / "intermediate" / "batch_0001.frames", keep_mtime)
    recipe = hex_recipe(tmp_path, shared_data / "hex", batch={"files_per_batch": 1}, split={"seed": 4})
    assert build(recipe), "the split runs again, finds the batch damaged, rebuilds it and splits"
    assert final_bytes(out) == clean[4]


def test_a_damaged_merge_manifest_is_named_by_status_and_rebuilt(tmp_path, shared_data, clean, capsys):
    recipe = hex_recipe(tmp_path, shared_data / "hex")
    out = tmp_path / "out-hex"
    assert build(recipe)
    manifest = out / "merged" / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:-10])
    capsys.readouterr()
    assert build(recipe, Status)
    printed = capsys.readouterr().out
    assert "merged: damaged" in printed and "damaged: merged/manifest.json" in printed
    recipe = hex_recipe(tmp_path, shared_data / "hex", split={"seed": 4})
    assert build(recipe)
    assert final_bytes(out) == clean[4]


@pytest.mark.parametrize("keep_mtime", [False, True], ids=["written", "bit-rot"])
def test_damaged_final_output_is_named_by_verify_and_repaired(tmp_path, shared_data, clean, capsys, keep_mtime):
    recipe = hex_recipe(tmp_path, shared_data / "hex")
    out = tmp_path / "out-hex"
    assert build(recipe)
    flip_byte(out / "final" / "X_train.npy", keep_mtime)
    capsys.readouterr()
    assert build(recipe, Status)
    plain = capsys.readouterr().out
    assert ("final: damaged" in plain) != keep_mtime, "the cheap check sees an in-place write, not bit rot"
    assert build(recipe, Status, verify=True)
    verified = capsys.readouterr().out
    assert "final: damaged" in verified and "damaged: final/X_train.npy" in verified
    assert build(recipe)
    assert final_bytes(out) == clean[3]
    assert build(recipe, Status, verify=True)
    assert "every checksum verified" in capsys.readouterr().out


def test_split_removes_only_its_own_earlier_outputs(tmp_path, shared_data):
    recipe = hex_recipe(tmp_path, shared_data / "hex", split={"normalize": True})
    out = tmp_path / "out-hex"
    assert build(recipe)
    assert (out / "final" / "normalization.json").is_file()
    (out / "final" / "thesis.txt").write_text("mine")
    (out / "final" / "notes.json").write_text("{}")
    recipe = hex_recipe(tmp_path, shared_data / "hex", split={"normalize": False})
    assert build(recipe)
    assert not (out / "final" / "normalization.json").exists(), "an output of the earlier split is removed"
    assert (out / "final" / "thesis.txt").read_text() == "mine" and (out / "final" / "notes.json").is_file()
    record = json.loads((out / "records" / "split.json").read_text())
    assert "final/X_train.npy" in record["outputs"] and "final/thesis.txt" not in record["outputs"]
    assert all(set(entry) == {"size", "checksum", "mtime_ns"} for entry in record["outputs"].values())


def test_cleanup_verifies_final_and_removes_only_recorded_intermediates(tmp_path, shared_data, clean):
    recipe = hex_recipe(tmp_path, shared_data / "hex")
    out = tmp_path / "out-hex"
    assert build(recipe)
    mine = [out / "merged" / "mine.npy", out / "intermediate" / "notes.txt", out / "files" / "keep.npz",
            out / "intermediate" / "batch_0000.npz"]
    for path in mine:
        path.parent.mkdir(exist_ok=True)
        path.write_text("user data")
    flip_byte(out / "final" / "X_test.npy", keep_mtime=True)
    assert not build(recipe, Cleanup), "a damaged final/ is not cleaned up: its intermediates would repair it"
    assert (out / "merged" / "manifest.json").is_file() and (out / "intermediate" / "batch_0000.frames").is_file()
    assert build(recipe, Status, verify=True) and build(recipe) and build(recipe, Cleanup)
    assert all(path.read_text() == "user data" for path in mine)
    assert not list((out / "intermediate").glob("batch_*.[fj]*")) and not (out / "merged" / "manifest.json").exists()
    assert final_bytes(out) == clean[3]


def test_every_run_removes_dead_writers_temps_in_every_folder_and_keeps_live_ones(tmp_path, shared_data):
    recipe = hex_recipe(tmp_path, shared_data / "hex")
    out = tmp_path / "out-hex"
    assert build(recipe)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        time.sleep(0.05)
        dead = [out / folder / f".x.json{TEMP_MARK}{HOST}-999999999-abcd" for folder in ("report", "monitor", "merged")]
        alive = out / "report" / f".y.png{TEMP_MARK}{HOST}-{sleeper.pid}-abcd"
        elsewhere = out / "final" / f".z.npy{TEMP_MARK}otherhost-999999999-abcd"
        for path in [*dead, alive, elsewhere]:
            path.write_bytes(b"partial")
        assert run_luigi("BuildDataset", recipe).returncode == 0, "a complete build sweeps too"
        assert not any(path.exists() for path in dead)
        assert alive.exists(), "a live writer's temp is kept"
        assert elsewhere.exists(), "another host's temp is that host's to sweep"
    finally:
        sleeper.kill()
        sleeper.wait()
