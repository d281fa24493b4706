"""The files flow end to end through Luigi's command line, on real Hex records."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, hex_recipe, luigi_command, luigi_env, run_luigi

from pipeline.engine.storage import TEMP_MARK
from pipeline.kinds import trmph
from pipeline.synthetic.hex import write_corpus

SPLITS = ("train", "val", "test")


def load_final(out: Path) -> dict:
    final = out / "final"
    result = {}
    for split in SPLITS:
        result[split] = {"X": np.load(final / f"X_{split}.npy", allow_pickle=False),
                         "groups": np.load(final / f"groups_{split}.npy", allow_pickle=False)}
        with np.load(final / f"labels_{split}.npz", allow_pickle=False) as labels:
            result[split].update({name: labels[name] for name in labels.files})
    return result


def final_bytes(out: Path) -> dict[str, bytes]:
    """Every final output's bytes; stats.json without its run-dependent timing."""
    final = {p.name: p.read_bytes() for p in sorted((out / "final").iterdir()) if p.name != "manifest.json"}
    stats = json.loads(final["stats.json"])
    del stats["processing"]
    final["stats.json"] = json.dumps(stats).encode()
    return final


def temp_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if TEMP_MARK in p.name]


def test_real_games_build_consistent_splits(tmp_path, shared_data):
    recipe = hex_recipe(tmp_path, shared_data / "hex", batch={"files_per_batch": 1})
    done = run_luigi("BuildDataset", recipe)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "out-hex"
    stats = json.loads((out / "final" / "stats.json").read_text())
    games = [line for p in sorted((shared_data / "hex").glob("*.trmph")) for line in p.read_text().split("\n") if line]
    positions = sum(trmph.parse_game(g, trmph.Rules())[0].size + 1 for g in games)
    assert stats["files"] == {"discovered": 2, "processed": 2, "failed": 0}
    assert stats["records"] == {"processed": len(games), "failed": 0}
    assert stats["rows"]["total"] == positions == sum(stats["rows"][s] for s in SPLITS)
    final = load_final(out)
    seen = [set(final[s]["groups"].tolist()) for s in SPLITS]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert sum(map(len, seen)) == len(set(games)) == sum(stats["groups"].values())
    for split in SPLITS:
        part = final[split]
        assert len(part["X"]) == stats["rows"][split] == len(part["policy"]) == len(part["groups"])
        stones = part["X"].reshape(len(part["X"]), 2, -1).sum(axis=2)
        assert (stones[:, 0] - stones[:, 1] == part["player_to_move"]).all()
        moving = part["policy"] >= 0
        occupied = part["X"].reshape(len(part["X"]), 2, -1).max(axis=1)
        assert (occupied[moving, part["policy"][moving]] == 0).all(), "the next move is to an empty cell"


def test_bad_inputs_are_recorded_and_the_rest_goes_on(tmp_path, shared_data):
    good = (shared_data / "hex" / "selfplay_sample.trmph").read_text().splitlines()
    data = tmp_path / "in"
    (data / "sub dir").mkdir(parents=True)
    (data / "good.trmph").write_text("\n".join(good) + "\n")
    (data / "sub dir" / "good.trmph").write_text(good[0] + "\n")
    (data / "mixed.trmph").write_text(f"{good[1]}\n#13,a1a1 b\n{good[2]}\n#13,a1b2 x\n")
    (data / "empty.trmph").write_text("")
    (data / "binary.trmph").write_bytes(bytes(range(256)) * 4)
    (data / "latin1.trmph").write_bytes("#13,a1b2 b  # caf\xe9\n".encode("latin-1"))
    (data / "utf16.trmph").write_text(good[0] + "\n", encoding="utf-16")
    (data / "bom crlf ü.trmph").write_bytes(b"\xef\xbb\xbf" + (good[3] + "\r\n").encode())
    (data / "truncated.trmph").write_text(good[4] + "\n" + good[0][:30])
    recipe = hex_recipe(tmp_path, data, batch={"files_per_batch": 3}, process={"repeated_moves": "reject"})
    done = run_luigi("BuildDataset", recipe)
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads((tmp_path / "out-hex" / "final" / "stats.json").read_text())
    reasons = {(f["file"], f["line"], f["error"]) for f in stats["failures"]["records"]}
    assert reasons == {
        ("mixed.trmph", 2, "RepeatedCell"), ("mixed.trmph", 4, "UnknownWinner"),
        ("empty.trmph", None, "ValueError"), ("binary.trmph", None, "NotTextError"),
        ("latin1.trmph", None, "NotTextError"), ("utf16.trmph", None, "NotTextError"),
        ("truncated.trmph", 2, "MissingWinner"),
    }
    assert stats["files"] == {"discovered": 9, "processed": 5, "failed": 4}
    assert stats["records"] == {"processed": 5 + 1 + 2 + 1 + 1, "failed": 3}
    assert stats["failures"]["by_reason"]["NotTextError"] == 3
    messages = {f["file"]: f["message"] for f in stats["failures"]["records"] if f["line"] is None}
    assert "NUL byte" in messages["binary.trmph"] and "not UTF-8" in messages["latin1.trmph"]


def test_on_error_fail_exits_non_zero_naming_file_and_line(tmp_path, shared_data):
    data = tmp_path / "in"
    data.mkdir()
    shutil.copy(shared_data / "hex" / "selfplay_sample.trmph", data / "a.trmph")
    (data / "b.trmph").write_text((shared_data / "hex" / "selfplay_sample.trmph").read_text() + "#13,a1zz b\n")
    recipe = hex_recipe(tmp_path, data, process={"on_error": "fail"})
    done = run_luigi("BuildDataset", recipe)
    assert done.returncode == 30
    assert "b.trmph:6: IllegalCoordinate" in done.stderr
    assert not (tmp_path / "out-hex" / "final").exists()


def test_a_bad_recipe_is_refused_before_any_work_with_one_clear_line(tmp_path, shared_data):
    recipe = hex_recipe(tmp_path, shared_data / "hex", split={"train": 0.9})
    done = run_luigi("BuildDataset", recipe)
    assert done.returncode != 0
    assert "[split] train + val + test = 1.3, must sum to 1" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out-hex").exists()


def test_each_stage_runs_alone_and_merge_reuses_batches(tmp_path):
    write_corpus(tmp_path / "in", files=6, games=2, size=5, seed=4)
    recipe = hex_recipe(tmp_path, tmp_path / "in", process={"board_size": 5})
    out = tmp_path / "out-hex"
    assert run_luigi("BuildBatches", recipe).returncode == 0
    assert sorted(p.name for p in (out / "intermediate").glob("batch_*.frames")) == [
        "batch_0000.frames", "batch_0001.frames", "batch_0002.frames"]
    assert not (out / "merged").exists() and not (out / "final").exists() and not (out / "files").exists()
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("batch_*")}
    assert run_luigi("BuildDataset", recipe).returncode == 0
    first = final_bytes(out)
    shutil.rmtree(out / "merged")
    shutil.rmtree(out / "final")
    assert run_luigi("MergeBatches", recipe).returncode == 0
    assert not (out / "final").exists()
    assert run_luigi("SplitDataset", recipe).returncode == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps, "no file or batch was processed again"
    assert final_bytes(out) == first


def test_changed_input_rebuilds_only_its_batch(tmp_path):
    paths = write_corpus(tmp_path / "in", files=6, games=2, size=5, seed=5)
    recipe = hex_recipe(tmp_path, tmp_path / "in", process={"board_size": 5})
    out = tmp_path / "out-hex"
    assert run_luigi("BuildDataset", recipe).returncode == 0
    records = {p.name: p.stat().st_mtime_ns for p in (out / "intermediate").glob("*.json")}
    rows = json.loads((out / "final" / "stats.json").read_text())["rows"]["total"]
    paths[3].write_text(paths[3].read_text().splitlines()[0] + "\n")
    assert run_luigi("BuildDataset", recipe).returncode == 0
    after = {p.name: p.stat().st_mtime_ns for p in (out / "intermediate").glob("*.json")}
    assert [name for name in records if after[name] != records[name]] == ["batch_0001.json"]
    assert json.loads((out / "final" / "stats.json").read_text())["rows"]["total"] < rows


def test_corrupt_batches_are_detected_and_rebuilt_alone(tmp_path):
    write_corpus(tmp_path / "in", files=6, games=2, size=5, seed=6)
    recipe = hex_recipe(tmp_path, tmp_path / "in", process={"board_size": 5})
    out = tmp_path / "out-hex"
    assert run_luigi("BuildDataset", recipe).returncode == 0
    first = final_bytes(out)
    batch0, batch2 = out / "intermediate" / "batch_0000.frames", out / "intermediate" / "batch_0002.frames"
    batch0.write_bytes(batch0.read_bytes()[:-100])  # truncated
    flipped = bytearray(batch2.read_bytes())
    flipped[len(flipped) // 2] ^= 0x10  # one bit flipped, same size
    batch2.write_bytes(bytes(flipped))
    stamps = {i: (out / "intermediate" / f"batch_{i:04d}.json").stat().st_mtime_ns for i in range(3)}
    shutil.rmtree(out / "merged")
    shutil.rmtree(out / "final")
    done = run_luigi("BuildDataset", recipe)
    assert done.returncode == 0, done.stderr[-3000:]
    after = {i: (out / "intermediate" / f"batch_{i:04d}.json").stat().st_mtime_ns for i in range(3)}
    assert [i for i in range(3) if after[i] != stamps[i]] == [0, 2], "the damaged batches alone are rebuilt"
    assert final_bytes(out) == first


def test_kill_9_mid_run_then_rerun_is_byte_identical(tmp_path):
    write_corpus(tmp_path / "in", files=24, games=3, size=7, seed=7)
    reference = hex_recipe(tmp_path, tmp_path / "in", name="reference", process={"board_size": 7})
    assert run_luigi("BuildDataset", reference).returncode == 0
    recipe = hex_recipe(tmp_path, tmp_path / "in", process={"board_size": 7})
    out = tmp_path / "out-hex"
    run = subprocess.Popen(luigi_command("BuildDataset", recipe), env=luigi_env(), cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while len(list((out / "intermediate").glob("*.json"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "intermediate").glob("*.json")}
    assert 4 <= len(kept) < 12, "killed mid-way"
    assert not (out / "final" / "manifest.json").exists()
    done = run_luigi("BuildDataset", recipe)
    assert done.returncode == 0, done.stderr[-3000:]
    assert {name: (out / "intermediate" / name).stat().st_mtime_ns for name in kept} == kept
    ours, theirs = final_bytes(out), final_bytes(tmp_path / "out-reference")
    assert json.loads(ours.pop("stats.json")) == {**json.loads(theirs.pop("stats.json")), "dataset": "hex"}
    assert ours == theirs
    assert temp_files(out) == []


@pytest.mark.parametrize("task", ["BuildDataset"])
def test_a_complete_dataset_runs_nothing_again(tmp_path, shared_data, task):
    recipe = hex_recipe(tmp_path, shared_data / "hex")
    assert run_luigi(task, recipe).returncode == 0
    again = run_luigi(task, recipe)
    assert again.returncode == 0
    assert "1 complete ones were encountered" in again.stderr or "already done" in again.stderr.lower()
    assert "ran successfully" not in again.stderr


def test_cleanup_refuses_before_final_outputs_and_then_keeps_only_final(tmp_path, shared_data):
    recipe = hex_recipe(tmp_path, shared_data / "hex")
    out = tmp_path / "out-hex"
    assert run_luigi("BuildBatches", recipe).returncode == 0
    refused = run_luigi("Cleanup", recipe)
    assert refused.returncode == 30 and "run BuildDataset before Cleanup" in refused.stderr
    assert (out / "intermediate").is_dir()
    assert run_luigi("BuildDataset", recipe).returncode == 0
    first = final_bytes(out)
    assert run_luigi("Cleanup", recipe).returncode == 0
    assert not {"files", "intermediate", "merged"} & {p.name for p in out.iterdir()}
    again = run_luigi("BuildDataset", recipe)
    assert again.returncode == 0 and "ran successfully" not in again.stderr
    assert final_bytes(out) == first
