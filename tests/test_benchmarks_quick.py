"""The benchmark's quick mode, as CI runs it: gross regressions caught by generous ratios, never by time."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT, luigi_env


def test_quick_benchmark_ratios(tmp_path):
    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--scratch",
                           str(tmp_path / "scratch"), "--json", str(out)], env=luigi_env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    throughput = results["throughput"]
    assert throughput["same_arrays"], "the baseline must produce the pipeline's very arrays to be a fair comparison"
    assert throughput["records"] == 2 * throughput["files"] and throughput["rows"] > throughput["records"]
    for workers in throughput["workers"].values():
        # Generous: every tiny quick-mode file gets its own checkpoint (about 1 ms of file creation
        # against 0.2 ms of processing); a gross regression still shows up far above this.
        assert workers["overhead_ratio"] < 6, workers
    for noop in results["noop"]:
        assert noop["noop_ran"] == 0 and noop["noop_tasks"] == 1
        assert noop["build_tasks"] <= noop["files"] // 500 + 5, "batches of files, not one task per file"
    memory = results["memory"]
    assert memory["merge_growth"] < 0.5 and memory["split_growth"] < 0.5, memory
    assert results["encoder"]["speedup"] > 2, results["encoder"]
