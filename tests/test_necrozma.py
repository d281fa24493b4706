"""The necrozma analysis against upstream's own run, universe by universe; chunking, repair, plug-ins."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SHARED_DATA, luigi_env

from pipeline.analyses import necrozma
from pipeline.engine.storage import read_json
from pipeline.flows import ticks as flow
from pipeline.flows import ticks_consolidate as consolidation
from pipeline.recipe import RecipeError, load_recipe

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = SHARED_DATA / "ticks" / "upstream" / "unchunked" / "all"
SAMPLE = ROOT / "samples" / "ticks" / "ticks_2024-03.parquet"
LUIGI = [sys.executable, "-m", "luigi", "--module", "pipeline"]


def recipe(folder: Path, chunk_size: str = "monthly", intervals=(1, 5, 15, 30, 60), lookbacks=(5, 10, 15, 20, 30),
           analysis: str = "necrozma", output: str = "out") -> Path:
    (folder / "in").mkdir(exist_ok=True)
    if not (folder / "in" / SAMPLE.name).exists():
        shutil.copy(SAMPLE, folder / "in")
    text = (ROOT / "samples" / "necrozma.toml").read_text()
    text = text.replace('input_dir = "ticks"', 'input_dir = "in"').replace('"../out/necrozma"', f'"{output}"')
    text = text.replace('chunk_size = "monthly"', f'chunk_size = "{chunk_size}"')
    text = text.replace("[1, 5, 15, 30, 60]", str(list(intervals))).replace("[5, 10, 15, 20, 30]", str(list(lookbacks)))
    text = text.replace('analysis = "necrozma"', f'analysis = "{analysis}"')
    path = folder / f"{output}.toml"
    path.write_text(text)
    return path


def build(path: Path) -> flow.TicksRun:
    """Every stage through the flow's plain functions."""
    run = flow.make_run(load_recipe(path))
    metadata = flow.chunk_input(run, 1 << 20, 2000)
    chunks, universes = tuple(range(1, len(metadata["chunks"]) + 1)), tuple(range(1, len(run.universes) + 1))
    rechunk = lambda: flow.chunk_input(run, 1 << 20, 2000)  # noqa: E731
    for universe in universes:
        for chunk in chunks:
            flow.build_result(run, metadata, universe, chunk, rechunk)
    consolidation.consolidate_all(run, metadata, universes, chunks, time.time(), rechunk)
    return run


def results(run: flow.TicksRun, name: str) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted((run.layout.results / name).glob("chunk_*.parquet"))])


def same(a: pa.Table, b: pa.Table) -> bool:
    """Same columns and values, bit for bit (NaN equal to NaN, which ``Table.equals`` denies)."""
    return a.schema.names == b.schema.names and all(
        np.array_equal(x, y, equal_nan=x.dtype.kind == "f") if x.dtype.kind in "fiub" else list(x) == list(y)
        for x, y in ((a.column(n).to_numpy(), b.column(n).to_numpy()) for n in a.schema.names))


def close(ours: np.ndarray, theirs: np.ndarray) -> bool:
    return np.allclose(ours, theirs, rtol=1e-9, atol=0, equal_nan=True)


@pytest.fixture(scope="module")
def unchunked(tmp_path_factory) -> flow.TicksRun:
    return build(recipe(tmp_path_factory.mktemp("necrozma")))


def test_every_universe_matches_upstream(unchunked):
    assert len(unchunked.universes) == 25
    for name, interval, lookback in unchunked.universes:
        reference = REFERENCE / f"universe_{interval}m_{lookback}lb"
        ours = results(unchunked, name)
        targets = pq.read_table(reference / "targets.parquet").to_pandas()
        candles = pq.read_table(reference / "candles.parquet").to_pandas()
        start = ours.column("start").cast("int64").to_numpy()
        index = np.searchsorted(candles["timestamp"].astype("int64").to_numpy() * 1000, start)
        assert index.tolist() == targets["index"].tolist(), name
        assert [necrozma.LEVELS[v] for v in ours.column("level").to_numpy()] == targets["level"].tolist(), name
        assert [necrozma.DIRECTIONS[v] for v in ours.column("direction").to_numpy()] == targets["direction"].tolist()
        assert ours.column("signature").to_pylist() == targets["signature"].tolist(), name
        assert close(ours.column("movement_pips").to_numpy(), targets["movement_pips"].to_numpy())
        features = pq.read_table(reference / "features.parquet").to_pandas()
        names = necrozma.feature_names(ours)
        assert sorted(names) == sorted(c for c in features.columns if c != "index"), name
        for feature in names:
            assert close(ours.column(feature).to_numpy(), features[feature].to_numpy(float)), (name, feature)
        final = unchunked.layout.universe_final(name)
        stats = pq.read_table(final / "feature_stats.parquet").to_pandas()
        upstream = pq.read_table(reference / "feature_stats.parquet").to_pandas()
        key = ["level", "direction", "stat"]
        merged = stats.merge(upstream, on=key, how="outer", suffixes=("", "_upstream"), indicator=True)
        assert (merged["_merge"] == "both").all(), name
        assert close(merged["value"].to_numpy(), merged["value_upstream"].to_numpy()), name
        counts = pq.read_table(final / "final_patterns.parquet").to_pandas()
        signatures = pq.read_table(reference / "signatures.parquet").to_pandas()
        ours_counts = sorted(zip(counts.level, counts.direction, counts.signature, counts["count"], strict=True))
        assert ours_counts == sorted(zip(signatures.level, signatures.direction, signatures.signature,
                                         signatures["count"], strict=True)), name
        summary = read_json(REFERENCE / f"universe_{interval}m_{lookback}lb" / "summary.json")
        levels = read_json(final / "stats.json")["levels"]
        for group, expected in summary["levels"].items():
            assert levels[group]["total_occurrences"] == expected["total_occurrences"], (name, group)
            assert levels[group]["unique_patterns"] == expected["unique_patterns"], (name, group)


def test_rankings_match_upstream_scores(unchunked):
    upstream = read_json(REFERENCE.parents[1] / "unchunked_upstream_files" / "reports" / "EURUSD_2024_rankings.json")
    ours = read_json(unchunked.layout.final / "rankings.json")
    key = {f"universe_{r['interval']}m_{r['lookback']}lb": r for r in ours}
    for row in upstream:
        mine = key[row["name"]]
        assert (mine["total_patterns"], mine["high_conf_patterns"], mine["score"]) == \
            (row["total_patterns"], row["high_conf_patterns"], row["score"]), row["name"]
    summary = read_json(unchunked.layout.final / "pattern_summary.json")
    assert summary["Pequeno"]["up"]["top_patterns"], "upstream leaves top_patterns empty; ours are filled"
    report = (unchunked.layout.final / "performance_report.md").read_text()
    assert "Universe ranking" in report and "dfa:VH|hur:" in report
    stats = read_json(unchunked.layout.final / "stats.json")
    assert stats["records"]["processed"] == 29_999 and stats["files"]["processed"] == 1


def test_chunked_equals_unchunked(unchunked, tmp_path):
    daily = build(recipe(tmp_path, chunk_size="daily", intervals=(5, 60), lookbacks=(5, 30)))
    for name, interval, lookback in daily.universes:
        twin = next(n for n, i, lb in unchunked.universes if (i, lb) == (interval, lookback))
        assert same(results(daily, name), results(unchunked, twin)), name
        ours = pq.read_table(daily.layout.universe_final(name) / "feature_stats.parquet")
        assert same(ours, pq.read_table(unchunked.layout.universe_final(twin) / "feature_stats.parquet")), name


def test_damaged_result_and_chunk_are_rebuilt(tmp_path):
    clean = build(recipe(tmp_path, chunk_size="daily", intervals=(15,), lookbacks=(10,), output="clean"))
    path = recipe(tmp_path, chunk_size="daily", intervals=(15,), lookbacks=(10,))
    run = build(path)
    result = run.layout.result(run.universes[0][0], 2)
    data = bytearray(result.read_bytes())
    data[len(data) // 2] ^= 0xFF
    result.write_bytes(bytes(data))
    chunk = sorted(run.layout.chunks.glob("chunk_003_*.parquet"))[0]
    chunk.write_bytes(chunk.read_bytes()[:-10] + b"0123456789")  # same size, other bytes
    (run.layout.root / "records" / "ticks" / "final" / f"{run.universes[0][0]}.json").unlink()
    flow._VERIFIED.clear()
    build(path)
    for name in ("final_patterns.parquet", "feature_stats.parquet", "X_train.npy", "labels_test.npz"):
        assert (run.layout.universe_final(run.universes[0][0]) / name).read_bytes() == \
            (clean.layout.universe_final(clean.universes[0][0]) / name).read_bytes(), name
    assert chunk.read_bytes() == sorted(clean.layout.chunks.glob("chunk_003_*.parquet"))[0].read_bytes()


def test_chunks_verified_ahead_are_not_read_again_and_a_damaged_one_is_left_to_the_task(tmp_path, monkeypatch):
    run = flow.make_run(load_recipe(recipe(tmp_path, chunk_size="daily", intervals=(60,), lookbacks=(5,))))
    metadata = flow.chunk_input(run, 1 << 20, 2000)
    chunk = sorted(run.layout.chunks.glob("chunk_003_*.parquet"))[0]
    stat = chunk.stat()
    chunk.write_bytes(chunk.read_bytes()[:-10] + b"0123456789")
    os.utime(chunk, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # silent damage: same size and mtime, other bytes
    flow._VERIFIED.clear()
    flow.verify_ahead(run, 2)  # as Luigi's main process does: chunks 1-3, nothing repaired
    assert sorted(Path(p).name for p, _, _ in flow._VERIFIED) == [metadata["chunks"][i]["file"] for i in (0, 1)]
    checked, real = [], flow.damaged
    monkeypatch.setattr(flow, "damaged", lambda root, record, names=None: checked.append(list(names))
                        or real(root, record, names))
    flow.build_result(run, metadata, 1, 2, lambda: flow.chunk_input(run, 1 << 20, 2000))
    assert checked[0] == [f"chunks/{chunk.name}"]  # the task reads only the damaged one, then re-chunks
    assert not real(run.layout.root, flow.current_record(run.layout.root, flow.CHUNKS, run.chunk_fingerprint))


def test_only_recorded_files_are_deleted(tmp_path):
    path = recipe(tmp_path, chunk_size="daily", intervals=(60,), lookbacks=(5,))
    run = build(path)
    mine = run.layout.results / "my_notes.txt"
    mine.write_text("not the pipeline's")
    (run.layout.chunks / "keep.csv").write_text("mine too")
    flow.chunk_input(run, 1 << 20, 2000)  # re-chunking removes only the chunking's recorded files
    assert mine.read_text() == "not the pipeline's" and (run.layout.chunks / "keep.csv").exists()


def test_bad_analysis_and_lookback_are_one_line(tmp_path):
    with pytest.raises(RecipeError, match=r"\[universes\] analysis.*unknown analysis 'nope': built-in analyses "
                                          r"are necrozma, next_candle"):
        load_recipe(recipe(tmp_path, analysis="nope"))
    with pytest.raises(RecipeError, match=r"lookbacks has \[40\]: analysis 'necrozma' needs lookbacks of 5-30"):
        flow.make_run(load_recipe(recipe(tmp_path, lookbacks=(5, 40), output="long")))


PLUGIN = '''
import numpy as np
import pyarrow as pa

from pipeline.analyses.base import window_index


def analyse(candles, rows, lookback, pip):
    """Pattern = sign of the preceding window's close-to-close move."""
    rows = rows[rows >= lookback]
    window = candles["close"][window_index(rows, lookback)]
    move = (window[:, -1] - window[:, 0]) / pip
    return pa.table({"start": pa.array(candles["start"][rows]).cast(pa.timestamp("ns", "UTC")),
                     "pattern": np.sign(move).astype(np.int8), "move_pips": move})
'''


def test_plugin_analysis_runs_end_to_end(tmp_path):
    (tmp_path / "window_sign.py").write_text(PLUGIN)
    path = recipe(tmp_path, chunk_size="daily", intervals=(15,), lookbacks=(4,), analysis="window_sign:analyse")
    env = {**luigi_env(), "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    process = subprocess.run([*LUIGI, "BuildDataset", "--recipe", str(path), "--local-scheduler"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr[-3000:]
    patterns = pq.read_table(tmp_path / "out" / "final" / "final_patterns.parquet").to_pandas()
    assert set(patterns["pattern"]) <= {-1, 0, 1} and patterns["count"].sum() > 100
    assert "move_pips_mean" in patterns.columns
