"""The luigid web UI in a real headless browser shows a running pipeline's tasks and their progress."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from runs import ROOT, environment, pipeline, write_recipe

from pipeline.synthetic.hex import write_corpus

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,900", "--virtual-time-budget=4000"]
PROGRESS_BAR = re.compile(r'class="progress-bar taskProgressBar"[^>]*aria-valuenow="(\d+)"')
RUN_MESSAGE = re.compile(r"run: \d+/7 tasks (\d+)% \| \d+ files [\d.]+/s \| ETA \S+ \| 0 failures")


def chromium() -> str:
    path = shutil.which("chromium")
    if not path:
        pytest.fail("chromium is not installed: run scripts/ensure-chromium (apt-get install chromium); "
                    ".ci/run and scripts/test do it when they can")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def api(port: int, method: str, **data) -> dict:
    query = urllib.parse.urlencode({"data": json.dumps(data)})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/{method}?{query}", timeout=5) as answer:
        return json.loads(answer.read())["response"]


def browse(port: int, tab: str, profile: Path, screenshot: Path) -> str:
    """The page's DOM after its scripts ran, and a screenshot of it."""
    url = f"http://127.0.0.1:{port}/static/visualiser/index.html#tab={tab}"
    run = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={screenshot}",
                          "--dump-dom", url], capture_output=True, text=True, timeout=40)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def run_progress(port: int) -> tuple[int, int, str]:
    """The run-level percent on BuildDataset (its message's and the scheduler's), and the message; -1 when none yet."""
    tasks = [t for status in ("PENDING", "RUNNING") for t in api(port, "task_list", status=status).values()
             if t["name"] == "BuildDataset"]
    message = tasks[0]["status_message"] or "" if tasks else ""
    shown = RUN_MESSAGE.fullmatch(message)
    if not shown:
        return -1, -1, message
    return int(shown.group(1)), tasks[0]["progress_percentage"], message


def test_luigid_ui_shows_the_running_pipeline_with_progress(tmp_path):
    chromium()
    port = free_port()
    write_corpus(tmp_path / "in", files=60, games=2)
    recipe = write_recipe(tmp_path, tmp_path / "in", kind="slow_trmph:KIND", files_per_batch=20)
    env = {**environment(tmp_path), "PIPELINE_LUIGID_DIR": str(tmp_path / "luigid"), "SLOW_TRMPH_SECONDS": "0.25"}
    luigid = ROOT / "scripts" / "luigid"
    started = subprocess.run([luigid, "start", "--port", str(port)], env=env, capture_output=True, text=True,
                             timeout=60)
    assert started.returncode == 0, started.stderr
    run = None
    try:
        status = subprocess.run([luigid, "status", "--port", str(port)], env=env, capture_output=True, text=True)
        assert "running" in status.stdout and f"http://127.0.0.1:{port}/" in status.stdout
        run = pipeline(["BuildDataset", "--recipe", str(recipe), "--scheduler-host", "127.0.0.1",
                        "--scheduler-port", str(port), "--workers", "1", "--lock-pid-dir", str(tmp_path / "locks")],
                       env, tmp_path)
        shown = None
        for attempt in range(3):
            deadline = time.monotonic() + 30
            while True:
                running = api(port, "task_list", status="RUNNING")
                batches = [t for t in running.values() if t["name"] == "ProcessBatch" and t["progress_percentage"]
                           and t["status_message"]]
                if batches:
                    break
                assert run.poll() is None and time.monotonic() < deadline, "no ProcessBatch reported progress"
                time.sleep(0.1)
            status = batches[0]["status_message"]
            assert re.fullmatch(r"\d+/20 files, [\d.]+/s, \d+ records \(\d+/s\), ETA \d+s, 0 failures", status)
            percent, scheduler_percent, message = run_progress(port)
            # the main process sets it on BuildDataset (pending until everything else is done) in two
            # calls, the percentage then the message: wait until a reading sees both of one update
            while percent < 0 or scheduler_percent != percent:
                assert run.poll() is None and time.monotonic() < deadline, f"no run progress on BuildDataset: {message}"
                time.sleep(0.1)
                percent, scheduler_percent, message = run_progress(port)
            assert 0 <= percent < 100
            dom = browse(port, "workers", tmp_path / f"profile-{attempt}", tmp_path / "workers.png")
            shown = [int(v) for v in PROGRESS_BAR.findall(dom)]
            if shown and "ProcessBatch(" in dom:
                break
        assert shown and all(0 < value <= 100 for value in shown), "the workers page shows no progress bar"
        deadline = time.monotonic() + 30
        while run_progress(port)[0] <= percent:  # updated as batches finish
            assert run.poll() is None and time.monotonic() < deadline, "the run progress did not move"
            time.sleep(0.1)
        assert (tmp_path / "workers.png").stat().st_size > 10_000
        tasks = browse(port, "tasks", tmp_path / "profile-tasks", tmp_path / "tasks.png")
        known = {t["name"] for status in ("RUNNING", "PENDING", "DONE") for t in api(port, "task_list",
                                                                                    status=status).values()}
        assert known == {"BuildDataset", "SplitDataset", "MergeBatches", "BuildBatches", "ProcessBatch"}
        for name in known:
            assert re.search(rf">\s*{name}\s*</td>", tasks), f"the task list does not show {name}"
        assert re.search(r'class="[^"]*statusMessage"[^>]*data-task-id="BuildDataset_', tasks), \
            "the task list shows no status message on BuildDataset"
        assert run.wait(timeout=60) == 0, run.stderr.read()
    finally:
        if run and run.poll() is None:
            run.kill()
        stopped = subprocess.run([luigid, "stop", "--port", str(port)], env=env, capture_output=True, text=True,
                                 timeout=30)
    assert "luigid stopped" in stopped.stdout
    after = subprocess.run([luigid, "status", "--port", str(port)], env=env, capture_output=True, text=True)
    assert after.returncode == 3 and "not running" in after.stdout
