"""Scale-out: two "hosts" (their own PID, UTS and mount namespaces and hostnames, ``unshare``) against one luigid,
sharing the output folder: every piece of work done once, outputs byte-identical to a one-host run, both exit 0;
a host killed with kill -9 mid-run is survived by the other. docs/scale-out.md describes the setup."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from runs import environment, luigid, write_recipe
from test_pipeline import temp_files
from test_ticks import recipe as ticks_recipe
from test_ticks import synthetic

from pipeline.synthetic.hex import write_corpus

HOSTS = ("hosta", "hostb")
SCHEDULER = {"scheduler": {"worker_disconnect_delay": 2, "retry_delay": 1, "prune_on_get_work": "true"}}
"""luigid's settings: a silent host's tasks return to the others within seconds (docs/scale-out.md)."""
UNSHARE = ["unshare", "--pid", "--uts", "--mount", "--fork", "--mount-proc"]
RUNNING = re.compile(r" running\s+(\w+\(.*\))$", re.MULTILINE)
"""Luigi's log line of a worker starting a task."""


@pytest.fixture(scope="module")
def namespaces() -> None:
    tried = subprocess.run([*UNSHARE, "hostname", HOSTS[0]], capture_output=True, text=True)
    if tried.returncode != 0:
        pytest.skip(f"unshare is not permitted here: {tried.stderr.strip()}")


@pytest.fixture
def scheduler(tmp_path, namespaces) -> int:
    with luigid(tmp_path / "luigid", **SCHEDULER) as port:
        yield port


def on_host(host: str, args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """``python -m pipeline ARGS`` on a "host" of its own: new PID, UTS and mount namespaces, hostname ``host``,
    and Luigi's process lock in a folder of its own (as a host's own /tmp would hold it)."""
    locks = Path(env["LUIGI_CONFIG_PATH"]).parent / "locks" / host
    locks.mkdir(parents=True, exist_ok=True)
    command = [*UNSHARE, "sh", "-c", 'hostname "$0" && exec "$@"', host, sys.executable, "-m", "pipeline", *args,
               "--lock-pid-dir", str(locks)]
    return subprocess.Popen(command, env=env, cwd=cwd, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_host(host: subprocess.Popen) -> None:
    """kill -9 the host's first process (its PID namespace's init): the kernel kills every other one with it."""
    psutil.Process(host.pid).children()[0].kill()


def run_hosts(recipe: Path, env: dict, port: int, kill_first_when: Callable[[], bool] | None = None,
              ) -> tuple[list[int], list[str]]:
    """Both hosts build ``recipe`` against luigid on ``port``; the first is killed once ``kill_first_when()``."""
    args = ["BuildDataset", "--recipe", str(recipe), "--scheduler-port", str(port), "--workers", "2"]
    hosts = [on_host(host, args, env, recipe.parent) for host in HOSTS]
    if kill_first_when:
        deadline = time.monotonic() + 120
        while not kill_first_when():
            assert time.monotonic() < deadline and hosts[0].poll() is None, "the first host ended before the trigger"
            time.sleep(0.01)
        kill_host(hosts[0])
    logs = [host.communicate(timeout=300)[1] for host in hosts]
    return [host.returncode for host in hosts], logs


def one_host(recipe: Path, env: dict) -> None:
    done = subprocess.run([sys.executable, "-m", "pipeline", "BuildDataset", "--recipe", str(recipe),
                           "--local-scheduler", "--workers", "2"], env=env, cwd=recipe.parent, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def tasks_run(logs: list[str], family: str) -> Counter:
    """How many times each task of ``family`` was started, over every host's log."""
    return Counter(task for log in logs for task in RUNNING.findall(log) if task.startswith(f"{family}("))


TIMINGS = {"manifest.json", "performance_report.md"}
"""Final files that hold a run's timings (a manifest: the checksum of stats.json); every other file is compared."""


def final_outputs(out: Path) -> dict[str, bytes]:
    """Every file under final/ with its bytes, but :data:`TIMINGS` and the timings in stats.json."""
    files = {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "final").rglob("*"))
             if p.is_file() and p.name not in TIMINGS}
    for name, data in files.items():
        if name.endswith("stats.json"):
            stats = json.loads(data)
            stats.pop("processing", None)  # the files flow's
            stats.pop("stages", None)  # the ticks flow's
            files[name] = json.dumps(stats, sort_keys=True).encode()
    return files


def running_on(monitor: Path, host: str, family: str) -> Callable[[], bool]:
    """Whether a task of ``family`` runs on ``host`` while another of its kind is already done: mid-run."""
    def check() -> bool:
        records = [json.loads(p.read_text()) for p in monitor.glob(f"{family}_*.json") if not p.name.startswith(".")]
        return any(r["state"] == "done" for r in records) and any(
            r["state"] == "running" and r.get("host") == host for r in records)
    return check


def assert_scaled_out(folders: dict[str, Path], recipes: dict[str, Path], env: dict, port: int, family: str) -> None:
    """The two-host run and the run with a killed host each match the one-host run; nothing is left behind."""
    one_host(recipes["one"], env)
    reference = final_outputs(folders["one"] / "out")

    codes, logs = run_hosts(recipes["two"], env, port)
    assert codes == [0, 0], [log[-3000:] for log in logs]
    runs = tasks_run(logs, family)
    assert runs and set(runs.values()) == {1}, f"each {family} ran once across the hosts: {runs}"
    assert final_outputs(folders["two"] / "out") == reference

    out = folders["kill"] / "out"
    codes, logs = run_hosts(recipes["kill"], env, port, running_on(out / "monitor", HOSTS[0], family))
    assert codes[1] == 0, logs[1][-3000:]
    assert codes[0] != 0, "the first host was killed"
    assert final_outputs(out) == reference
    again = on_host(HOSTS[0], ["BuildDataset", "--recipe", str(recipes["kill"]), "--scheduler-port", str(port)],
                    env, folders["kill"])
    assert again.wait(timeout=120) == 0, again.communicate()[1][-3000:]
    assert temp_files(out) == [], "the killed host's temps are removed by its next run"
    assert not (out / "stop").exists()


def test_two_hosts_build_the_files_flow_once_and_survive_a_killed_host(tmp_path, scheduler):
    corpus = tmp_path / "in"
    write_corpus(corpus, files=10, games=2, size=13, seed=5)
    folders = {name: tmp_path / name for name in ("one", "two", "kill")}
    recipes = {}
    for name, folder in folders.items():
        folder.mkdir()
        recipes[name] = write_recipe(folder, corpus, kind="slow_trmph:KIND", files_per_batch=1)
    env = {**environment(tmp_path, processing={"others_poll_s": 0.5}), "SLOW_TRMPH_SECONDS": "0.3"}
    assert_scaled_out(folders, recipes, env, scheduler, "ProcessBatch")


def test_two_hosts_build_the_ticks_flow_once_and_survive_a_killed_host(tmp_path, scheduler):
    folders = {name: tmp_path / name for name in ("one", "two", "kill")}
    recipes = {}
    for name, folder in folders.items():
        folder.mkdir()
        synthetic(folder, days=8, rows=40_000)
        recipes[name] = ticks_recipe(folder, "*.parquet", intervals=[1, 5, 15], lookbacks=[3, 10], chunk_size="daily")
    env = environment(tmp_path, processing={"others_poll_s": 0.5})
    assert_scaled_out(folders, recipes, env, scheduler, "AnalyseChunk")
