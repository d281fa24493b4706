"""The benchmark's quick mode, as CI runs it: gross regressions caught by generous ratios, never by time."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT, luigi_env


def test_quick_benchmark_ratios(tmp_path):
    out, doc = tmp_path / "results.json", tmp_path / "performance.md"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--scratch",
                           str(tmp_path / "scratch"), "--json", str(out), "--doc", str(doc)], env=luigi_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| bytes written by a build / bytes of `final/` |" in doc.read_text()
    results = json.loads(out.read_text())
    assert len(results["throughput"]) == 2, "many small files and fewer big ones"
    for throughput in results["throughput"]:
        assert throughput["same_arrays"], "the baseline must produce the pipeline's very arrays to be a fair comparison"
        assert throughput["records"] % throughput["files"] == 0 and throughput["rows"] > throughput["records"]
        for workers in throughput["workers"].values():
            # Generous: quick-mode corpora take a second or so, so a run's fixed costs (Luigi's start and
            # scheduling, the report) weigh most, and more so on a loaded machine; a gross regression
            # in the per-file or per-row work still shows up far above this.
            assert workers["pipeline_s"] < 6 * workers["baseline_s"] + 5, workers
        # final/ is part of what is at rest and is written at least once; write_bytes is 0 on tmpfs.
        assert throughput["at_rest_ratio"] > 1 and throughput["written_ratio"] > 1, throughput
        assert throughput["written_device_mb"] >= 0
    uncompressed = results["uncompressed"]
    assert uncompressed["at_rest_mb"] > results["throughput"][0]["at_rest_mb"], "boards deflate well"
    assert uncompressed["written_ratio"] > 1
    targets = results["targets"]
    assert [len(targets[name]["each"]) for name in ("overhead_ratio", "at_rest_ratio", "written_ratio")] == [2, 2, 2]
    for noop in results["noop"]:
        assert noop["noop_ran"] == 0 and noop["noop_tasks"] == 1
        assert noop["build_tasks"] <= noop["files"] // 500 + 5, "batches of files, not one task per file"
    memory = results["memory"]
    assert memory["merge_growth"] < 0.5 and memory["split_growth"] < 0.5, memory
    assert results["encoder"]["speedup"] > 2, results["encoder"]
