"""Operating the pipeline: workers, resource guard, peak memory, terminal progress, cron lock, exit codes, report."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import shutil
import subprocess
import sys
import time
from xml.etree import ElementTree

import numpy as np
import pytest
from runs import HEX, ROOT, environment, pipeline, write_recipe

from pipeline.engine.console import ERASE, RunConsole, bar, describe, summarise
from pipeline.engine.layout import Layout
from pipeline.engine.report import label_facts, write_report
from pipeline.engine.resources import (
    Limits,
    Sample,
    WorkersError,
    peak_memory_mb,
    reset_peak_memory,
    resolve_workers,
    wait_for_resources,
)
from pipeline.synthetic.hex import write_corpus

PNG = b"\x89PNG\r\n\x1a\n"
SVG = "{http://www.w3.org/2000/svg}"


# --- workers ---------------------------------------------------------------------------------------------

def test_workers_capped_to_cpus_with_a_warning():
    warnings = []
    assert resolve_workers(16, 1, cpus=2, warn=warnings.append) == 2
    assert "--workers = 16" in warnings[0] and "2 CPUs" in warnings[0]
    assert resolve_workers(None, 8, cpus=4, warn=warnings.append) == 4
    assert "[processing] workers = 8" in warnings[1]
    assert resolve_workers(None, 3, cpus=4, warn=warnings.append) == 3
    assert resolve_workers(2, 3, cpus=4, warn=warnings.append) == 2
    assert len(warnings) == 2


@pytest.mark.parametrize("workers", [0, -3])
def test_zero_or_negative_workers_refused(workers):
    with pytest.raises(WorkersError, match="must be 1 or more"):
        resolve_workers(workers, 1, cpus=2)
    with pytest.raises(WorkersError, match=r"\[processing\] workers"):
        resolve_workers(None, workers, cpus=2)


def test_command_refuses_zero_workers_and_caps_too_many(tmp_path):
    recipe = write_recipe(tmp_path, HEX)
    env = environment(tmp_path)
    refused = pipeline(["BuildDataset", "--recipe", str(recipe), "--local-scheduler", "--workers", "0"], env, tmp_path)
    out, err = refused.communicate(timeout=60)
    assert refused.returncode == 2
    assert "error: --workers = 0: the number of workers must be 1 or more" in err
    assert not (tmp_path / "out").exists()
    env = environment(tmp_path, processing={"workers": 999})
    capped = pipeline(["BuildDataset", "--recipe", str(recipe), "--local-scheduler"], env, tmp_path)
    out, err = capped.communicate(timeout=120)
    assert capped.returncode == 0, err
    cpus = len(os.sched_getaffinity(0))
    assert f"[processing] workers = 999 is more than the {cpus} CPUs" in err
    assert f"Running Worker with {cpus} processes" in err


# --- resource guard and peak memory -------------------------------------------------------------------------

class FakeMachine:
    """A machine short of memory for the first ``short`` checks, with a clock that sleeping advances."""

    def __init__(self, short: int, load: float = 10.0):
        self.short, self.load, self.checks, self.now = short, load, 0, 0.0

    def probe(self) -> Sample:
        self.checks += 1
        return Sample(100.0 if self.checks <= self.short else 8000.0, self.load)

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_guard_waits_while_memory_is_short_then_resumes():
    machine, said = FakeMachine(short=3), []
    limits = Limits(min_available_mb=1000, max_wait_s=60, poll_s=5)
    waited = wait_for_resources(limits, said.append, machine.probe, machine.sleep, lambda: machine.now)
    assert waited == 15
    assert len(said) == 3 and all("available memory 100 MiB < 1000 MiB" in s for s in said)
    assert machine.checks == 4


def test_guard_wait_is_bounded_and_says_it_goes_on():
    machine, said = FakeMachine(short=10**6, load=500.0), []
    limits = Limits(max_load_percent=200, load_minutes=5, max_wait_s=12, poll_s=5)
    waited = wait_for_resources(limits, said.append, machine.probe, machine.sleep, lambda: machine.now)
    assert waited == 12
    assert said[0].startswith("waiting for resources") and "CPU load over 5 min 500%" in said[0]
    assert said[-1].startswith("going on after waiting 12s")


def test_guard_does_not_wait_when_there_is_room():
    machine, said = FakeMachine(short=0), []
    waited = wait_for_resources(Limits(min_available_mb=1000, max_load_percent=200), said.append, machine.probe,
                                machine.sleep, lambda: machine.now)
    assert waited == 0 and said == []


def test_peak_memory_follows_an_allocation_and_resets():
    assert reset_peak_memory()
    before = peak_memory_mb()
    block = np.ones(64 << 20, dtype=np.uint8)  # 64 MiB, touched
    assert peak_memory_mb() >= before + 60
    del block
    reset_peak_memory()
    assert peak_memory_mb() < before + 30


def test_guard_in_a_real_run_waits_then_goes_on(tmp_path):
    recipe = write_recipe(tmp_path, HEX)
    env = environment(tmp_path, guard={"min_available_mb": 10**9, "max_wait_s": 1, "poll_s": 1})
    run = pipeline(["BuildBatches", "--recipe", str(recipe), "--local-scheduler"], env, tmp_path)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert err.count("waiting for resources (0s of at most 1s): available memory") == 2
    assert err.count("going on after waiting 1s for resources: available memory") == 2
    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "monitor").glob("ProcessBatch*.json")]
    assert len(records) == 2
    for record in records:
        assert record["state"] == "done" and record["waited_s"] >= 1
        assert record["done"] == record["total"] == 1
        assert record["peak_rss_mb"] > 10


# --- terminal progress ---------------------------------------------------------------------------------------

def record(state: str, done: int, total: int, unit: str = "files", started: float = 100.0, failures: int = 0,
           status: str = ""):
    return {"state": state, "done": done, "total": total, "unit": unit, "started": started, "failures": failures,
            "status": status}


def test_console_sums_the_tasks_of_this_run():
    records = [record("done", 4, 4), record("running", 1, 4, failures=2), record("done", 3, 3, unit="arrays"),
               record("done", 9, 9, started=50.0), None]
    snap = summarise(records, started=100.0, now=110.0)
    assert (snap.tasks_done, snap.tasks_total, snap.unit, snap.units_done, snap.failures) == (2, 5, "files", 5, 2)
    assert snap.fraction == pytest.approx((1 + 0.25 + 1) / 5)
    assert snap.rate == pytest.approx(0.5)
    assert snap.eta == pytest.approx(10 * (1 - 0.45) / 0.45)
    assert describe(snap).startswith("2/5 tasks 45% | 5 files 0.5/s | ETA 12s | 2 failures")
    line = bar(snap, 100)
    assert line.startswith("[") and "#" in line and len(line) < 100
    held = record("running", 0, 0, status="waiting for resources (5s of at most 300s): available memory ...")
    snap = summarise([held, record("done", 2, 2)], started=100.0, now=110.0)
    assert snap.waiting == 1 and describe(snap).endswith("| 0 failures | 1 waiting for resources")


def test_console_weighs_tasks_by_bytes_so_merge_and_split_count_and_a_failed_task_is_not_done():
    batches = [record("done", 5, 5) for _ in range(4)]
    merging = record("running", 1, 4, unit="arrays")
    snap = summarise([*batches, merging, None], started=100.0, now=110.0, weights=[10, 10, 10, 10, 40, 40])
    assert snap.fraction == pytest.approx((40 + 10) / 120)  # by count it would be (4 + 0.25) / 6
    assert snap.eta == pytest.approx(10 * (1 - 50 / 120) / (50 / 120))
    unknown = summarise([record("done", 1, 1), None], started=100.0, now=110.0, weights=[None, 30])
    assert unknown.fraction == pytest.approx(0.5)  # an unknown weight counts as the mean known one
    stopped = summarise([record("done", 5, 5, failures=1), record("failed", 2, 5), None], started=100.0, now=110.0,
                        weights=[10, 10, 10])
    assert stopped.fraction == pytest.approx(1 / 3) and stopped.failures == 2 and stopped.eta is None
    assert describe(stopped).startswith("1/3 tasks (1 failed) 33% |") and "ETA ? | 2 failures" in describe(stopped)


def test_log_lines_never_run_into_the_bar_and_the_handlers_get_their_stream_back(tmp_path):
    screen = io.StringIO()
    handler = logging.StreamHandler(screen)
    log = logging.getLogger("luigi-interface")
    log.addHandler(handler)
    try:
        console = RunConsole("bar", refresh_s=60, stream=screen)
        console.watch("t", tmp_path / "t.json", 1.0)
        console._draw()
        log.warning("a line from a task")
        console._draw()
        console.stop()
        assert handler.stream is screen
    finally:
        log.removeHandler(handler)
    text = screen.getvalue()
    assert ERASE + "a line from a task\n" in text and text.count(ERASE + "[") == 3 and text.endswith("\n")
    assert text.index("] 0/1 tasks") < text.index("a line") < text.rindex("] 0/1 tasks")


def test_progress_is_log_lines_on_stderr_without_a_terminal(tmp_path):
    recipe = write_recipe(tmp_path, HEX)
    env = environment(tmp_path, progress={"log_every_s": 0.2})
    run = pipeline(["BuildDataset", "--recipe", str(recipe), "--local-scheduler"], env, tmp_path)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert "progress: 6/6 tasks 100% | 2 files" in err
    assert "progress" not in out and "\r" not in err


def test_progress_is_one_bar_on_a_terminal(tmp_path):
    recipe = write_recipe(tmp_path, HEX)
    env = environment(tmp_path)
    main, child = pty.openpty()
    run = subprocess.Popen([sys.executable, "-m", "pipeline", "BuildDataset", "--recipe", str(recipe),
                            "--local-scheduler"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=child)
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    out, _ = run.communicate(timeout=120)
    os.close(main)
    screen = b"".join(chunks).decode(errors="replace")
    assert run.returncode == 0, screen
    assert "] 6/6 tasks 100% | 2 files" in screen and "\r\x1b[K[" in screen
    assert "progress:" not in screen and not out.strip()


# --- cron: lock, dated log, exit codes -------------------------------------------------------------------------

def cron_env(tmp_path, logs: str = "logs"):
    return {**environment(tmp_path), "PIPELINE_LOG_DIR": str(tmp_path / logs),
            "PIPELINE_LOCK_DIR": str(tmp_path / "locks"), "SLOW_TRMPH_SECONDS": "0.5"}


def test_second_identical_cron_run_exits_without_doing_work(tmp_path):
    write_corpus(tmp_path / "in", files=12, games=2)
    recipe = write_recipe(tmp_path, tmp_path / "in", kind="slow_trmph:KIND", files_per_batch=12)
    command = [str(ROOT / "scripts" / "cron-run"), str(recipe), "--local-scheduler"]
    first = subprocess.Popen(command, env=cron_env(tmp_path, "logs1"), cwd=tmp_path, text=True,
                             stderr=subprocess.PIPE)
    monitor = tmp_path / "out" / "monitor"
    deadline = time.monotonic() + 60
    while not any(monitor.glob("ProcessBatch*.json")):
        assert first.poll() is None and time.monotonic() < deadline, "the first run never started its batch"
        time.sleep(0.05)
    # The log folder is in the environment, not on the command line, which is what the lock compares.
    second = subprocess.run(command, env=cron_env(tmp_path, "logs2"), cwd=tmp_path, text=True,
                            stderr=subprocess.PIPE, timeout=60)
    assert first.poll() is None, "the first run ended before the second could test the lock"
    assert second.returncode == 10, second.stderr
    assert "exited 10" in second.stderr
    assert first.wait(timeout=60) == 0, first.stderr.read()
    [first_log] = (tmp_path / "logs1").glob("recipe-*.log")
    [second_log] = (tmp_path / "logs2").glob("recipe-*.log")
    assert "already running" in second_log.read_text()
    assert "running   ProcessBatch" not in second_log.read_text()
    assert "running   ProcessBatch" in first_log.read_text()
    assert (tmp_path / "out" / "report" / "report.md").is_file()


def test_cron_run_exits_non_zero_when_a_task_fails(tmp_path):
    inputs = tmp_path / "in"
    shutil.copytree(HEX, inputs)
    (inputs / "broken.trmph").write_text("#13,a1b2zz9 b\n")
    recipe = write_recipe(tmp_path, inputs, on_error="fail")
    env = cron_env(tmp_path)
    run = subprocess.run([str(ROOT / "scripts" / "cron-run"), str(recipe), "--local-scheduler"], env=env,
                         cwd=tmp_path, text=True, capture_output=True, timeout=120)
    assert run.returncode == 30, run.stderr
    assert not run.stdout
    [log] = (tmp_path / "logs").glob("recipe-*.log")
    text = log.read_text()
    assert "broken.trmph" in text and "failed" in text
    assert f"log: {log}" in run.stderr


# --- report -------------------------------------------------------------------------------------------------

def test_demo_run_writes_the_report_with_plots(tmp_path):
    recipe = write_recipe(tmp_path, HEX)
    run = pipeline(["BuildDataset", "--recipe", str(recipe), "--local-scheduler"], environment(tmp_path), tmp_path)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    report = tmp_path / "out" / "report"
    assert f"Report: {report / 'report.md'}" in err
    stats = json.loads((tmp_path / "out" / "final" / "stats.json").read_text())
    with np.load(tmp_path / "out" / "final" / "labels_train.npz") as labels:
        heads = sorted(labels.files)
    plots = ["batches.svg", "failures.svg", "splits.svg", "memory.svg", *(f"label_{h}.svg" for h in heads)]
    for name in plots:
        assert ElementTree.parse(report / name).getroot().tag == f"{SVG}svg", name
    text = (report / "report.md").read_text()
    for name in plots:
        assert f"]({name})" in text
    for split in ("train", "val", "test"):
        assert f"| rows in {split} | {stats['rows'][split]} |" in text
    rects = ElementTree.parse(report / "splits.svg").getroot().findall(f"{SVG}rect")
    heights = [float(r.get("height")) for r in rects if r.get("fill") not in ("white", "none")]
    counts = [stats["rows"][s] for s in ("train", "val", "test")]
    assert np.allclose(np.array(heights) / heights[0], np.array(counts) / counts[0], atol=0.01)  # drawn to scale
    facts = json.loads((report / "report.json").read_text())
    assert [b["batch"] for b in facts["batches"]] == [0, 1]
    assert all(b["seconds"] > 0 and b["records"] > 0 for b in facts["batches"])
    assert {s["stage"] for s in facts["stages"]} >= {"ProcessBatch", "MergeBatches", "SplitDataset"}
    value = facts["labels"]["value"]
    assert value["classes"] == [0.0, 1.0]
    assert [sum(c) for c in value["counts"]] == [stats["rows"][s] for s in ("train", "val", "test")]

    # plots an earlier report listed and this one does not (an earlier version's PNGs) go; a user's file stays
    (report / "splits.png").write_bytes(PNG)
    (report / "mine.png").write_bytes(PNG)
    facts["plot_digests"]["splits.png"] = "of an earlier version"
    (report / "report.json").write_text(json.dumps(facts))
    write_report(Layout(tmp_path / "out"), "ops")
    assert not (report / "splits.png").exists() and (report / "mine.png").read_bytes() == PNG
    assert sorted(p.name for p in report.glob("*.svg")) == sorted(plots)


def test_label_values_that_are_not_finite_are_counted_apart(tmp_path):
    layout = Layout(tmp_path / "out")
    layout.final.mkdir(parents=True)
    many = np.linspace(0, 1, 300).astype(np.float32)  # more values than classes: a histogram
    many[::10] = np.nan
    few = np.array([0, 1, 1, np.inf, 0, np.nan], dtype=np.float64)
    for split in ("train", "val", "test"):
        np.savez(layout.final / f"labels_{split}.npz", many=many, few=few)
    facts = label_facts(layout, chunk_rows=64)
    assert facts["many"]["not_finite"] == [30, 30, 30] and facts["few"]["not_finite"] == [2, 2, 2]
    assert np.isfinite(facts["many"]["edges"]).all() and facts["many"]["edges"][0] == float(many[1])  # many[0]: NaN
    assert [sum(c) for c in facts["many"]["counts"]] == [270, 270, 270]
    assert facts["few"]["classes"] == [0.0, 1.0] and facts["few"]["counts"] == [[2, 2]] * 3
    json.dumps(facts, allow_nan=False)  # report.json stays strict JSON
