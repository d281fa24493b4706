"""The ptv kind on OpenPTV's own test experiments: validation, chunks, upstream-identical outputs, resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import SHARED_DATA, luigi_env

from pipeline import exitcodes
from pipeline.__main__ import main as pipeline_main
from pipeline.kinds.ptv import ExperimentError, make_plan, split_frames
from pipeline.recipe import RecipeError, load_recipe

ROOT = Path(__file__).resolve().parents[1]
DATA = SHARED_DATA / "ptv"
CAVITY = DATA / "test_cavity"
REFERENCE = DATA / "test_cavity_reference_outputs"
TRACK = DATA / "track"
FRAMES = range(10000, 10005)


# --- chunk arithmetic (no engine needed) -------------------------------------------------

@pytest.mark.parametrize(("first", "last", "chunks", "size", "expected"), [
    (10000, 10004, 1, None, [5]),
    (10000, 10004, 2, None, [3, 2]),
    (10000, 10004, 3, None, [2, 2, 1]),
    (0, 9, 3, None, [4, 3, 3]),
    (0, 9, 4, None, [3, 3, 2, 2]),
    (10000, 10004, 7, None, [1, 1, 1, 1, 1]),
    (5, 5, 3, None, [1]),
    (0, 9, None, 4, [4, 3, 3]),
    (0, 9, None, 5, [5, 5]),
    (0, 9, None, 100, [10]),
    (1000, 2000, 7, None, [143] * 7),
])
def test_split_frames_is_as_even_with_remainder_first(first, last, chunks, size, expected):
    ranges = split_frames(first, last, chunks, size)
    assert [len(r) for r in ranges] == expected
    assert [f for r in ranges for f in r] == list(range(first, last + 1))


@pytest.mark.parametrize(("args", "message"), [
    ((10005, 10004, 2, None), "first = 10005 is after last = 10004"),
    ((0, 9, None, None), "give exactly one of chunks and chunk_size"),
    ((0, 9, 2, 3), "give exactly one of chunks and chunk_size"),
    ((0, 9, 0, None), "chunks = 0 must be 1 or more"),
    ((0, 9, None, -2), "chunk_size = -2 must be 1 or more"),
])
def test_split_frames_rejects_bad_ranges_and_counts(args, message):
    with pytest.raises(ExperimentError, match=message):
        split_frames(*args)


# --- helpers -----------------------------------------------------------------------------

def engine():
    pytest.importorskip("optv")
    pytest.importorskip("pyptv.ptv")


def mirror(source: Path, target: Path, skip: tuple[str, ...] = ()) -> Path:
    """A writable experiment folder of symlinks to ``source``'s files (YAML and .par copied)."""
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_dir() or any(str(relative).startswith(s) for s in skip):
            continue
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in (".yaml", ".par"):
            shutil.copyfile(path, target / relative)
        else:
            os.symlink(path, target / relative)
    return target


def settings(**values) -> dict:
    return {"parameters": "parameters_Run1.yaml", "first": 10000, "last": 10004, "chunks": 2,
            "chunk_size": None} | values


def write_recipe(path: Path, experiment: Path, output: Path, on_error: str = "fail", **ptv) -> Path:
    ptv = {"parameters": "parameters_Run1.yaml", "first": 10000, "last": 10004, "chunks": 2} | ptv
    lines = ["[dataset]", 'name = "ptv-test"', 'kind = "ptv"', f'input_dir = "{experiment}"',
             f'output_dir = "{output}"', "[process]", f'on_error = "{on_error}"', "[ptv]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in ptv.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def luigi_command(recipe: Path, workers: int) -> list[str]:
    return [str(Path(sys.executable).parent / "luigi"), "--module", "pipeline", "BuildDataset", "--recipe",
            str(recipe), "--local-scheduler", "--workers", str(workers)]


def run_luigi(recipe: Path, workers: int) -> subprocess.CompletedProcess:
    return subprocess.run(luigi_command(recipe, workers), cwd=ROOT, env=luigi_env(), capture_output=True,
                          text=True, timeout=300)


def upstream_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for sub in ("res", "img") for p in (folder / sub).iterdir())


def assert_same_numbers(ours: Path, reference: Path) -> None:
    """Every upstream file of ``reference`` exists in ``ours`` with the same numbers as printed."""
    names = upstream_files(reference)
    assert upstream_files(ours) == names
    for name in names:
        mine, theirs = (ours / name).read_text().splitlines(), (reference / name).read_text().splitlines()
        assert len(mine) == len(theirs), f"{name}: {len(mine)} lines, reference has {len(theirs)}"
        for number, (a, b) in enumerate(zip(mine, theirs, strict=True), start=1):
            assert a.split() == b.split(), f"{name}:{number}: {a!r} != reference {b!r}"


def ptv_is(folder: Path, frame: int) -> np.ndarray:
    rows = (folder / f"res/ptv_is.{frame}").read_text().split()
    return np.array(rows[1:], dtype=float).reshape(-1, 5)


def assert_trajectories_follow_links(table_path: Path, reference: Path, frames: range) -> None:
    """The trajectories table holds every particle of ``ptv_is`` and follows its predecessor links."""
    table = pq.read_table(table_path).to_pandas()
    assert list(table.columns) == ["trajectory", "frame", "particle", "x", "y", "z"]
    ids = {}
    for frame in frames:
        rows = ptv_is(reference, frame)
        part = table[table.frame == frame].sort_values("particle")
        assert len(part) == len(rows)
        np.testing.assert_array_equal(part[["x", "y", "z"]].to_numpy(), rows[:, 2:])
        traj = part.trajectory.to_numpy()
        prev = rows[:, 0].astype(int)
        linked = prev >= 0
        if frame > frames.start:
            np.testing.assert_array_equal(traj[linked], ids[frame - 1][prev[linked]])
            assert not np.isin(traj[~linked], table[table.frame < frame].trajectory).any()
        ids[frame] = traj


# --- validation ----------------------------------------------------------------------------

def test_validation_names_the_missing_image_of_a_frame(tmp_path):
    engine()
    experiment = mirror(CAVITY, tmp_path / "exp")
    (experiment / "img/cam2.10003").unlink()
    with pytest.raises(ExperimentError, match=r"img/cam2\.10003: image of camera 2 for frame 10003 not found"):
        make_plan(experiment, tmp_path / "out", settings())
    make_plan(experiment, tmp_path / "out", settings(last=10002))  # frames without the gap are fine


@pytest.mark.parametrize(("remove", "message"), [
    ("img", r"exp/img: image folder not found"),
    ("cal", r"exp/cal: calibration folder not found"),
    ("cal/cam3.tif.addpar", r"exp/cal/cam3\.tif\.addpar: calibration file of camera 3 not found"),
    ("cal/cam1.tif.ori", r"exp/cal/cam1\.tif\.ori: calibration file of camera 1 not found"),
    ("parameters_Run1.yaml", r"exp/parameters_Run1\.yaml: parameters not found"),
])
def test_validation_names_missing_folders_and_calibrations(tmp_path, remove, message):
    engine()
    experiment = mirror(CAVITY, tmp_path / "exp")
    target = experiment / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(ExperimentError, match=message):
        make_plan(experiment, tmp_path / "out", settings())


def test_validation_of_parameter_sources(tmp_path):
    engine()
    experiment = mirror(CAVITY, tmp_path / "exp")
    with pytest.raises(ExperimentError, match=r"several parameter files \(parameters_Run1\.yaml, parameters_Run1_1"):
        make_plan(experiment, tmp_path / "out", settings(parameters=""))
    with pytest.raises(ExperimentError, match="first = 10004 is after last = 10000"):
        make_plan(experiment, tmp_path / "out", settings(first=10004, last=10000))
    (experiment / "parameters_Run1.yaml").write_text("num_cams: 4\nptv: {}\n")
    with pytest.raises(ExperimentError, match=r"parameters_Run1\.yaml: section 'ptv' misses img_cal"):
        make_plan(experiment, tmp_path / "out", settings())
    for path in experiment.glob("parameters_Run*.yaml"):
        path.unlink()
    legacy = make_plan(experiment, tmp_path / "out", settings(parameters=""))  # falls back to parameters/
    assert legacy.experiment.parameters == experiment / "parameters" and legacy.experiment.cameras == 4
    shutil.rmtree(experiment / "parameters")
    with pytest.raises(ExperimentError, match="no parameters_Run\\*.yaml and no parameters/ folder"):
        make_plan(experiment, tmp_path / "out", settings(parameters=""))


def test_recipe_rejects_bad_counts_and_the_flow_reports_one_line(tmp_path):
    engine()
    with pytest.raises(RecipeError, match=r"\[ptv\] chunks = 0 must be 1 or more"):
        load_recipe(write_recipe(tmp_path / "r0.toml", CAVITY, tmp_path / "out", chunks=0))
    with pytest.raises(RecipeError, match=r"\[ptv\] unknown key 'chunk'"):
        load_recipe(write_recipe(tmp_path / "r1.toml", CAVITY, tmp_path / "out", chunk=2))
    recipe = write_recipe(tmp_path / "r2.toml", CAVITY, tmp_path / "out", chunks=2, chunk_size=3)
    result = run_luigi(recipe, 1)
    assert result.returncode == 30, result.stderr[-2000:]
    assert "TrackParticles failed: [ptv] give exactly one of chunks and chunk_size" in result.stderr
    assert "Traceback" not in result.stderr
    out = tmp_path / "out"
    started = {p.name for p in out.iterdir()} if out.exists() else set()
    assert started <= {"monitor", ".pipeline-output.json"}, "no work was started"


# --- upstream-identical outputs -------------------------------------------------------------

@pytest.mark.parametrize(("workers", "chunks"), [(1, 1), (2, 2), (2, 7)])
def test_cavity_matches_upstream_reference(tmp_path, workers, chunks):
    engine()
    out = tmp_path / "out"
    result = run_luigi(write_recipe(tmp_path / "r.toml", CAVITY, out, chunks=chunks), workers)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_numbers(out, REFERENCE)
    assert_trajectories_follow_links(out / "trajectories.parquet", REFERENCE, FRAMES)
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["chunks"]) == min(chunks, 5)
    assert [c["status"] for c in summary["chunks"]] == ["done"] * len(summary["chunks"])
    assert sum(c["frames"] for c in summary["chunks"]) == 5
    first_rows = sum(int((out / f"sequence/res/rt_is.{f}").read_text().split()[0]) for f in FRAMES)
    assert summary["particles"] == first_rows
    assert sum(sum(c["correspondences"].values()) for c in summary["chunks"]) == first_rows
    assert summary["tracking"]["rows"] == sum(len(ptv_is(REFERENCE, f)) for f in FRAMES)
    assert not list(CAVITY.rglob("*_targets")) and not (CAVITY / "res").exists()  # input left alone
    assert not (out / "scratch").exists()


def test_a_damaged_tracked_file_is_named_by_verify_and_tracked_again(tmp_path, capsys):
    engine()
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.toml", CAVITY, out, chunks=1)
    assert run_luigi(recipe, 1).returncode == 0
    trajectories = out / "trajectories.parquet"
    first = trajectories.read_bytes()
    damaged = out / "res" / f"ptv_is.{FRAMES[1]}"
    stat = damaged.stat()
    damaged.write_bytes(damaged.read_bytes().replace(b"1", b"7", 1))  # same size, mtime kept: as bit rot
    os.utime(damaged, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert pipeline_main(["status", str(recipe)]) == exitcodes.SUCCESS, "the cheap check cannot see bit rot"
    capsys.readouterr()
    assert pipeline_main(["status", str(recipe), "--verify"]) == exitcodes.NOT_BUILT
    printed = capsys.readouterr().out
    assert "tracking: damaged" in printed and f"damaged: res/ptv_is.{FRAMES[1]}" in printed
    assert run_luigi(recipe, 1).returncode == 0
    assert trajectories.read_bytes() == first
    assert_same_numbers(out, REFERENCE)


def test_legacy_par_folder_gives_the_same_outputs_as_yaml(tmp_path):
    engine()
    from pipeline.kinds.ptv_engine import run_chunk

    experiment = mirror(CAVITY, tmp_path / "exp")
    outputs = []
    for parameters in ("parameters_Run1.yaml", "parameters"):
        out = tmp_path / parameters
        plan = make_plan(experiment, out, settings(parameters=parameters, first=10002, last=10002, chunks=1))
        run_chunk(plan, plan.chunks[0])
        outputs.append({name: (out / "sequence" / name).read_bytes() for name in plan.experiment.frame_outputs(10002)})
    assert outputs[0] == outputs[1]
    assert int(outputs[0]["res/rt_is.10002"].split()[0]) > 1000


def test_bad_frame_fails_or_is_skipped_and_recorded(tmp_path):
    engine()
    from pipeline.kinds.ptv_engine import FrameError, run_chunk

    experiment = mirror(CAVITY, tmp_path / "exp")
    (experiment / "img/cam3.10002").unlink()
    (experiment / "img/cam3.10002").write_bytes(b"not an image\n")
    plan = make_plan(experiment, tmp_path / "fail", settings(first=10001, last=10003, chunks=1), "fail")
    with pytest.raises(FrameError, match=r"exp/img/cam3\.10002: frame 10002: \w+"):
        run_chunk(plan, plan.chunks[0])
    record = json.loads(plan.layout.chunk_record(0).read_text())
    assert record["status"] == "failed" and record["frames_processed"] == 2
    assert not (plan.layout.sequence / "res/rt_is.10002").exists()

    plan = make_plan(experiment, tmp_path / "skip", settings(first=10001, last=10003, chunks=1), "skip")
    record = run_chunk(plan, plan.chunks[0])
    assert record["status"] == "done" and record["frames_failed"] == 1
    [failure] = record["failures"]
    assert failure["file"].endswith("exp/img/cam3.10002") and failure["frame"] == 10002
    assert (plan.layout.sequence / "res/rt_is.10002").read_text() == "0\n"
    again = make_plan(experiment, tmp_path / "skip", settings(first=10001, last=10003, chunks=1), "fail")
    with pytest.raises(FrameError, match=r"cam3\.10002: frame 10002"):  # a skipped failure is retried under fail
        run_chunk(again, again.chunks[0])
    assert json.loads(again.layout.chunk_record(0).read_text())["frames_reused"] == 2
    unbroken = (tmp_path / "fail/sequence/res/rt_is.10001").read_bytes()
    assert (plan.layout.sequence / "res/rt_is.10001").read_bytes() == unbroken
    assert int((plan.layout.sequence / "res/rt_is.10003").read_text().split()[0]) > 1000


# --- resume after kill -9 ---------------------------------------------------------------------

def test_resume_after_kill_redoes_only_missing_frames(tmp_path):
    engine()
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.toml", CAVITY, out, chunks=1)
    frames_dir = out / "sequence" / "frames"
    process = subprocess.Popen(luigi_command(recipe, 2), cwd=ROOT, env=luigi_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if frames_dir.is_dir() and len(list(frames_dir.glob("*.json"))) >= 2:
            break
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before = {p.name: p.stat().st_mtime_ns for p in frames_dir.glob("*.json")}
    assert 2 <= len(done_before) < 5, "the kill came too late to test resuming"
    assert not (out / "records" / "ptv" / "tracking.json").exists()
    assert not (out / "chunks/chunk_0000.json").exists()
    for path in (out / "sequence/res").iterdir():  # no partial file under a final name
        lines = path.read_text().splitlines()
        assert len(lines) == int(lines[0]) + 1, path

    result = run_luigi(recipe, 2)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "chunks/chunk_0000.json").read_text())
    assert record["frames_reused"] >= len(done_before)
    assert record["frames_reused"] + record["frames_processed"] == 5
    for name, mtime in done_before.items():
        assert (frames_dir / name).stat().st_mtime_ns == mtime, f"frame {name} was redone"
    assert_same_numbers(out, REFERENCE)
    assert not (out / "scratch").exists()

    parquet = (out / "trajectories.parquet").read_bytes()
    (out / f"res/ptv_is.{FRAMES[1]}").unlink()  # a lost output of tracking is remade
    (out / f"sequence/img/cam1.{FRAMES[-1]}_targets").unlink()  # a lost frame output is redone too
    result = run_luigi(recipe, 1)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "chunks/chunk_0000.json").read_text())
    assert (record["frames_reused"], record["frames_processed"]) == (4, 1)
    assert (out / "trajectories.parquet").read_bytes() == parquet
    assert_same_numbers(out, REFERENCE)

    from pipeline.kinds.ptv_engine import run_chunk, track

    shorter = make_plan(CAVITY, out, settings(last=10003, chunks=1))
    assert run_chunk(shorter, shorter.chunks[0])["frames_reused"] == 4
    track(shorter)
    assert not list(out.glob("res/*.10004")) and not list(out.glob("img/*.10004_targets"))
    assert len(upstream_files(out)) == 4 * 3 + 4 * 4


# --- the track experiment -----------------------------------------------------------------------

def test_track_experiment_runs_and_matches_res_orig_correspondences(tmp_path):
    engine()
    from pipeline.kinds.ptv_engine import run_chunk, track

    experiment = mirror(TRACK, tmp_path / "track", skip=("img_orig", "res_orig"))
    shutil.copytree(TRACK / "img_orig", experiment / "img")  # as upstream's own test prepares it
    frames = range(10095, 10306)
    plan = make_plan(experiment, tmp_path / "out", settings(first=frames.start, last=frames[-1], chunks=3))
    assert plan.experiment.existing_targets and plan.experiment.cameras == 2
    for chunk in plan.chunks:
        run_chunk(plan, chunk)
    summary = track(plan)
    deltas = []
    for frame in frames:
        ours = (plan.layout.sequence / f"res/rt_is.{frame}").read_text().splitlines()
        orig = (TRACK / f"res_orig/rt_is.{frame}").read_text().splitlines()
        assert ours[0] == orig[0], f"frame {frame}: {ours[0]} particles, res_orig has {orig[0]}"
        for a, b in zip(ours[1:], orig[1:], strict=True):
            a, b = a.split(), b.split()
            assert a[0] == b[0] and a[4:] == b[4:], f"frame {frame}: correspondence {a} != res_orig {b}"
            deltas.append(np.abs(np.array(a[1:4], float) - np.array(b[1:4], float)).max())
    # Same particles and correspondences; positions differ by under a millimetre (see docs/ptv.md).
    assert len(deltas) == 209 and max(deltas) < 1.0
    assert summary["tracking"]["rows"] == 209 and summary["tracking"]["links"] > 150
    for frame in frames:
        assert (tmp_path / "out" / f"res/ptv_is.{frame}").is_file()
    assert_trajectories_follow_links(tmp_path / "out/trajectories.parquet", tmp_path / "out", frames)
