"""The ticks flow: real Exness lines end to end, bad-tick accounting, chunk-size independence,
selections, the chronological split, and resuming after kill -9."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SHARED_DATA, luigi_env

from pipeline.analyses.next_candle import FEATURES
from pipeline.engine.failures import InputError
from pipeline.engine.series import SelectionError, parse_selection, resolve_selection
from pipeline.engine.storage import read_json
from pipeline.flows import ticks as flow
from pipeline.flows import ticks_consolidate as consolidation
from pipeline.kinds.ticks import CLASS_NAMES, read_csv_blocks
from pipeline.recipe import RecipeError, load_recipe
from pipeline.synthetic.ticks import write_ticks
from pipeline.tasks.ticks import SelectionParameter

ROOT = Path(__file__).resolve().parents[1]
REAL = SHARED_DATA / "ticks" / "exness_eurusd_sample.csv"
LUIGI = [sys.executable, "-m", "luigi", "--module", "pipeline"]


def recipe(folder: Path, pattern: str, intervals: list[int], lookbacks: list[int], chunk_size: str = "monthly",
           on_error: str = "skip", name: str = "recipe", output: str = "out") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(f"""
[dataset]
name = "ticks-test"
kind = "ticks"
input_dir = "in"
pattern = "{pattern}"
output_dir = "{output}"
[process]
on_error = "{on_error}"
[ticks]
chunk_size = "{chunk_size}"
[universes]
intervals = {intervals}
lookbacks = {lookbacks}
min_count = 5
[split]
train = 0.6
val = 0.2
test = 0.2
""")
    return path


def luigi(recipe_path: Path, *args: str, task: str = "BuildDataset", **popen) -> subprocess.Popen:
    env = luigi_env()  # this checkout's code, a run of its own
    command = [*LUIGI, task, "--recipe", str(recipe_path), "--local-scheduler", *args]
    return subprocess.Popen(command, cwd=recipe_path.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **popen)


def run_luigi(recipe_path: Path, *args: str) -> str:
    process = luigi(recipe_path, *args)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output[-3000:]
    return output


def build_in_process(recipe_path: Path, row_group_rows: int = 1000) -> tuple[flow.TicksRun, dict]:
    """Every stage of the flow through its plain functions, without Luigi."""
    run = flow.make_run(load_recipe(recipe_path))
    metadata = flow.chunk_input(run, 1 << 20, row_group_rows)
    chunks = tuple(range(1, len(metadata["chunks"]) + 1))
    universes = tuple(range(1, len(run.universes) + 1))
    for universe in universes:
        for chunk in chunks:
            flow.write_result(run, universe, chunk, flow.analyse_chunk(run, metadata, chunk, universe), time.time())
        consolidation.consolidate_universe(run, metadata, universe, chunks)
    consolidation.consolidate_all(run, metadata, universes, chunks, time.time())
    return run, metadata


def real_rows() -> list[tuple[np.datetime64, float, float]]:
    """The real sample read with the csv module: (time, bid, ask)."""
    with open(REAL, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    return [(np.datetime64(r[2].rstrip("Z"), "ns"), float(r[3]), float(r[4])) for r in rows]


def test_real_exness_lines_end_to_end(tmp_path):
    (tmp_path / "in").mkdir()
    shutil.copy(REAL, tmp_path / "in")
    path = recipe(tmp_path, "*.csv", intervals=[1, 60], lookbacks=[1, 2])
    run_luigi(path)
    out = tmp_path / "out"
    metadata = read_json(out / "chunks" / "metadata.json")
    rows = real_rows()
    assert metadata["ticks"]["read"] == metadata["ticks"]["kept"] == len(rows) == 6
    assert [c["period"] for c in metadata["chunks"]] == ["2024-01", "2024-09"]
    chunk = pq.read_table(out / "chunks" / "chunk_001_2024-01.parquet").to_pydict()
    first_time, bid, ask = rows[0]
    assert chunk["mid"][0] == pytest.approx((bid + ask) / 2)
    assert chunk["spread_pips"][0] == pytest.approx((ask - bid) * 1e4, abs=1e-4)  # 5.9 pips
    assert chunk["timestamp"][0].replace(tzinfo=None) == first_time.astype("datetime64[us]").item()

    # 1-minute universe: the two ticks of 2024-01-15 00:00 share one candle
    result = pq.read_table(out / "results" / "u01_i1m_l1" / "chunk_001.parquet").to_pydict()
    mids = [(b + a) / 2 for _, b, a in rows]
    assert len(result["start"]) == 3
    assert result["ticks"] == [1, 2, 1]
    assert result["open"][1] == pytest.approx(mids[1]) and result["close"][1] == pytest.approx(mids[2])
    assert result["low"][1] == pytest.approx(min(mids[1:3])) and result["high"][1] == pytest.approx(max(mids[1:3]))
    # the last January candle's next candle is September's first: two ticks, body -1.1 pips = "down 1-5"
    next_body = (mids[5] - mids[4]) * 1e4
    assert result["next_body_pips"][2] == pytest.approx(next_body, abs=1e-4)
    assert CLASS_NAMES[result["next_class"][2]] == "down 1-5"

    for universe in ("u01_i1m_l1", "u02_i1m_l2", "u03_i60m_l1", "u04_i60m_l2"):
        final = out / "final" / universe
        stats = read_json(final / "stats.json")
        x = np.load(final / "X_train.npy", allow_pickle=False)
        assert x.shape == (stats["rows"]["train"], len(FEATURES))
        with np.load(final / "labels_train.npz", allow_pickle=False) as labels:
            assert labels["next_class"].shape == (stats["rows"]["train"],)
        assert stats["rows"]["total"] + sum(stats["left_out"].values()) == stats["candles"] == 4
    assert (out / "final" / "final_patterns.parquet").is_file()
    assert "| 6 | 6 | 0 | 2 | monthly | 4 |" in (out / "final" / "performance_report.md").read_text()


def test_bad_ticks_are_counted_and_recorded(tmp_path):
    lines = REAL.read_text().splitlines()
    bad = [
        lines[0],
        lines[1],                                                     # 2 good
        '"exness","EURUSD","2024-01-15 00:00:00.032Z",1.0945',        # 3 unparsable: 4 fields
        '"exness","EURUSD","not a time",1.0945,1.09456',              # 4 unparsable timestamp
        '"exness","EURUSD","2024-01-15 00:00:00.040Z",abc,1.09456',   # 5 unparsable price
        lines[2],                                                     # 6 good
        '"exness","EURUSD","2024-01-15 00:00:00.050Z",1.0947,1.0946', # 7 bid > ask
        '"exness","EURUSD","2024-01-15 00:00:00.060Z",0,1.0946',      # 8 non-positive
        lines[2],                                                     # 9 duplicate timestamp
        '"exness","EURUSD","2024-01-10 00:00:00.000Z",1.09,1.0901',   # 10 out of order
        "",                                                           # 11 blank: ignored
        lines[3],                                                     # 12 good
    ]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ticks.csv").write_text("\n".join(bad) + "\n")
    path = recipe(tmp_path, "*.csv", intervals=[1], lookbacks=[1])
    run = flow.make_run(load_recipe(path))
    metadata = flow.chunk_input(run, 1 << 20, 1000)
    assert metadata["ticks"] == {"read": 10, "kept": 3, "bad": 7, "unparsable": 3, "bid_gt_ask": 1,
                                 "non_positive": 1, "duplicate": 1, "out_of_order": 1}
    records = {(r["line"], r["error"]) for r in metadata["failures"]["records"]}
    assert records == {(3, "unparsable"), (4, "unparsable"), (5, "unparsable"), (7, "bid_gt_ask"),
                       (8, "non_positive"), (9, "duplicate"), (10, "out_of_order")}
    assert all(r["file"] == "ticks.csv" and r["message"] for r in metadata["failures"]["records"])
    assert sum(c["rows"] for c in metadata["chunks"]) == 3

    failing = flow.make_run(load_recipe(recipe(tmp_path, "*.csv", [1], [1], on_error="fail", name="fail")))
    with pytest.raises(InputError, match=r"ticks\.csv:3: unparsable"):
        flow.chunk_input(failing, 1 << 20, 1000)


def test_csv_line_numbers_hold_across_blocks(tmp_path):
    """Malformed and blank lines over many small blocks (some blocks all malformed, the file ending
    in malformed lines): each row keeps its own line number and every malformed line is reported."""
    header = REAL.read_text().splitlines()[0]
    lines, expected_good, expected_bad = [header], {}, []
    for number in range(2, 6002):
        if number % 7 == 0 or 3000 <= number < 3800 or number > 5995:
            lines.append("garbage line")
            expected_bad.append(number)
        elif number % 11 == 0:
            lines.append("")
        else:
            lines.append(f'"exness","EURUSD","2024-01-15 00:00:00.000Z",{number},{number + 1}')
            expected_good[number] = float(number)
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    good, bad = {}, []
    for block in read_csv_blocks(path, 4096):
        good.update(zip(block.line.tolist(), block.bid.tolist(), strict=True))
        bad += [number for number, _ in block.text]
    assert good == expected_good
    assert sorted(bad) == expected_bad


def test_bad_parquet_rows_are_counted_by_row(tmp_path):
    (tmp_path / "in").mkdir()
    stamps = pa.array([1_000, None, 3_000, 2_000, 3_000, 4_000], pa.int64()).cast(pa.timestamp("ms", "UTC"))
    bid = pa.array([1.1, 1.1, 1.1, 1.1, 1.1, None])
    pq.write_table(pa.table({"timestamp": stamps, "bid": bid, "ask": [1.2] * 6}), tmp_path / "in" / "t.parquet")
    run = flow.make_run(load_recipe(recipe(tmp_path, "*.parquet", [1], [1])))
    metadata = flow.chunk_input(run, 1 << 20, 1000)
    assert metadata["ticks"]["kept"] == 2
    assert {(r["line"], r["error"]) for r in metadata["failures"]["records"]} == {
        (2, "unparsable"), (4, "out_of_order"), (5, "duplicate"), (6, "unparsable")}


def test_bad_file_is_recorded_not_fatal(tmp_path):
    (tmp_path / "in").mkdir()
    shutil.copy(REAL, tmp_path / "in" / "a.csv")
    (tmp_path / "in" / "b.csv").write_text("time,price\n1,2\n")
    run = flow.make_run(load_recipe(recipe(tmp_path, "*.csv", [1], [1])))
    metadata = flow.chunk_input(run, 1 << 20, 1000)
    assert metadata["files"] == {"discovered": 2, "failed": 1}
    [record] = metadata["failures"]["records"]
    assert record["file"] == "b.csv" and record["line"] is None and "Exness layout" in record["message"]
    assert metadata["ticks"]["kept"] == 6


def test_normalize_is_refused_clearly(tmp_path):
    (tmp_path / "in").mkdir()
    path = recipe(tmp_path, "*.csv", [1], [1])
    path.write_text(path.read_text() + "normalize = true\n")
    with pytest.raises(RecipeError, match=r"normalize = true is not supported by kind 'ticks'"):
        flow.make_run(load_recipe(path))


def test_no_good_ticks_is_a_clear_error(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "t.csv").write_text(REAL.read_text().splitlines()[0] + "\nnot,a,tick\n")
    run = flow.make_run(load_recipe(recipe(tmp_path, "*.csv", [1], [1])))
    with pytest.raises(InputError, match=r"no good ticks in the 1 files matching '\*\.csv' \(1 bad ticks"):
        flow.chunk_input(run, 1 << 20, 1000)
    assert not (tmp_path / "out" / "chunks" / "metadata.json").exists()


def synthetic(folder: Path, days: int = 16, rows: int = 40_000, start: str = "2024-01-24") -> None:
    """A few market days crossing a week and a month boundary (Parquet input)."""
    write_ticks(folder / "in", rows, start=start, days=days, seed=3)


def result_tables(run: flow.TicksRun, name: str):
    files = sorted(run.layout.universe_results(name).glob("chunk_*.parquet"))
    return pq.ParquetDataset(files).read()


def assert_same_table(a, b, what) -> None:
    """Equal schema and values, NaN equal to NaN (Arrow's ``equals`` treats NaN as unequal)."""
    assert a.schema == b.schema, what
    for name in a.column_names:
        left, right = (table.column(name) for table in (a, b))
        if pa.types.is_timestamp(left.type):
            left, right = (column.cast(pa.int64()).fill_null(-1) for column in (left, right))
        left, right = left.to_numpy(), right.to_numpy()
        assert np.array_equal(left, right, equal_nan=left.dtype.kind == "f"), (what, name)


def test_results_do_not_depend_on_chunk_size(tmp_path):
    synthetic(tmp_path)
    built = {}
    for size in ("daily", "weekly", "monthly"):
        path = recipe(tmp_path, "*.parquet", intervals=[1, 60], lookbacks=[3, 30], chunk_size=size, name=size,
                      output=f"out-{size}")
        built[size] = build_in_process(path, row_group_rows=500)
    counts = {size: len(metadata["chunks"]) for size, (_, metadata) in built.items()}
    assert counts["daily"] > counts["weekly"] > counts["monthly"] == 2
    reference_run = built["monthly"][0]
    for size in ("daily", "weekly"):
        run = built[size][0]
        for name, _, _ in run.universes:
            assert_same_table(result_tables(run, name), result_tables(reference_run, name), (size, name))
            for array in ("X_train.npy", "X_test.npy", "groups_val.npy", "labels_test.npz"):
                assert (run.layout.universe_final(name) / array).read_bytes() == \
                    (reference_run.layout.universe_final(name) / array).read_bytes(), (size, name, array)
        assert_same_table(pq.read_table(run.layout.final / "final_patterns.parquet"),
                          pq.read_table(reference_run.layout.final / "final_patterns.parquet"), size)
    # the 60-minute, 30-candle windows of a daily chunk reach back over several earlier chunks
    daily = result_tables(built["daily"][0], "u04_i60m_l30").to_pydict()
    assert sum(w is not None for w in daily["window_start"]) > 0


def test_chronological_split_keeps_windows_inside_splits(tmp_path):
    synthetic(tmp_path)
    run, _ = build_in_process(recipe(tmp_path, "*.parquet", intervals=[5], lookbacks=[12], chunk_size="weekly"))
    name = run.universes[0][0]
    folder = run.layout.universe_final(name)
    stats = read_json(folder / "stats.json")
    groups = {split: np.load(folder / f"groups_{split}.npy") for split in ("train", "val", "test")}
    assert all(len(g) for g in groups.values())
    assert groups["train"].max() < groups["val"].min() and groups["val"].max() < groups["test"].min()
    # recount by the rule: window start and next candle inside one split
    table = result_tables(run, name).to_pandas()
    val_from = np.datetime64(stats["split"]["val_from"].rstrip("Z"), "ns")
    test_from = np.datetime64(stats["split"]["test_from"].rstrip("Z"), "ns")
    first = table["window_start"].dt.tz_localize(None).to_numpy()
    last = table["next_start"].dt.tz_localize(None).to_numpy()
    ok = ~np.isnat(first) & ~np.isnat(last)
    expect = {"train": ok & (last < val_from),
              "val": ok & (first >= val_from) & (last < test_from),
              "test": ok & (first >= test_from)}
    for split, rows in expect.items():
        x = np.load(folder / f"X_{split}.npy")
        assert len(x) == rows.sum() == stats["rows"][split]
        assert np.array_equal(x, table.loc[rows, list(FEATURES)].to_numpy(np.float32))
    assert stats["left_out"]["crossing_split"] == int((ok & ~(expect["train"] | expect["val"] | expect["test"])).sum())
    assert stats["left_out"]["crossing_split"] >= 2 * 11  # a window of 12 candles at each of two boundaries


@pytest.mark.parametrize("text, numbers", [("1,5,10-15,20", (1, 5, 10, 11, 12, 13, 14, 15, 20)), ("", ()),
                                           (" 3 , 1-2", (1, 2, 3)), ("7-7", (7,))])
def test_selection_parses(text, numbers):
    assert parse_selection(text, "--chunks") == numbers


@pytest.mark.parametrize("text, message", [("0", "starts below 1"), ("5-3", "ends before it starts"),
                                           ("1,,2", "'' is not a number"), ("a", "'a' is not a number"),
                                           ("1-2-3", "not a number or a range"), ("2,1-3", "2 is selected more"),
                                           ("-1", "not a number or a range"), ("1.5", "not a number")])
def test_selection_rejects_bad_ranges(text, message):
    with pytest.raises(SelectionError, match=message):
        parse_selection(text, "--chunks")


def test_selection_range_checked_against_available():
    assert resolve_selection((), 3, "--chunks") == (1, 2, 3)
    assert resolve_selection((2, 3), 3, "--chunks") == (2, 3)
    with pytest.raises(SelectionError, match="13 is selected but there are only 12"):
        resolve_selection((1, 13), 12, "--chunks")
    assert SelectionParameter(description="universes").normalize("20,1-3,5,4") == "1-5,20"


def test_selected_chunks_and_universes_only(tmp_path):
    synthetic(tmp_path, days=5, rows=10_000)
    path = recipe(tmp_path, "*.parquet", intervals=[5, 15], lookbacks=[3], chunk_size="daily")
    run_luigi(path, "--BuildTicks-chunks", "2-3", "--BuildTicks-universes", "2")
    results = sorted(p.relative_to(tmp_path / "out" / "results").as_posix()
                     for p in (tmp_path / "out" / "results").rglob("*.parquet"))
    assert results == ["u02_i15m_l3/chunk_002.parquet", "u02_i15m_l3/chunk_003.parquet"]
    subset = tmp_path / "out" / "final" / "subsets" / "u2_c2-3"
    assert read_json(subset / "u02_i15m_l3" / "stats.json")["chunks"] == [2, 3]
    assert read_json(subset / "stats.json")["universes"] == ["u02_i15m_l3"]
    assert not (tmp_path / "out" / "final" / "stats.json").exists()  # a subset never stands as the full build
    process = luigi(path, "--BuildTicks-chunks", "2-40")
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0 and "--chunks: 5-40 are selected but there are only 4 (1-4)" in output
    process = luigi(path, "--universes", "1,5,10-15", task="BuildTicks")
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0 and "--universes: 5,10-15 are selected but there are only 2 (1-2)" in output
    assert "Traceback" not in output


def test_resume_after_kill_recomputes_only_missing_results(tmp_path):
    synthetic(tmp_path, days=12, rows=30_000)
    path = recipe(tmp_path, "*.parquet", intervals=[1, 5, 15], lookbacks=[3, 10], chunk_size="daily")
    results = tmp_path / "out" / "results"
    records = tmp_path / "out" / "records" / "ticks" / "results"
    process = luigi(path, "--workers", "2", start_new_session=True)
    deadline = time.time() + 90
    # Wait for 8 recorded results: a result is renamed into place before its record is written, so with two
    # workers up to two results may stand without their records at the kill (and are computed again).
    while len(list(records.rglob("chunk_*.json"))) < 8 and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    before = {p: p.stat().st_mtime_ns for p in results.rglob("chunk_*.parquet")  # finished: recorded
              if (records / p.parent.name / f"{p.stem}.json").exists()}
    metadata = read_json(tmp_path / "out" / "chunks" / "metadata.json")
    total = len(metadata["chunks"]) * 6
    assert 8 <= len(before) < total, "the run was not interrupted mid-way"
    for result in before:  # nothing partial stands under a final name
        assert pq.read_metadata(result).num_rows > 0

    run_luigi(path, "--workers", "2")
    after = {p: p.stat().st_mtime_ns for p in results.rglob("chunk_*.parquet")}
    assert len(after) == total
    assert {p: after[p] for p in before} == before  # finished results were not recomputed
    assert not [p for p in (tmp_path / "out").rglob(".*.tmp-*")]

    clean = recipe(tmp_path, "*.parquet", intervals=[1, 5, 15], lookbacks=[3, 10], chunk_size="daily",
                   name="clean", output="clean")
    run, _ = build_in_process(clean, row_group_rows=65536)
    for name, _, _ in run.universes:
        for array in ("X_train.npy", "labels_val.npz", "groups_test.npy", "final_patterns.parquet"):
            assert (tmp_path / "out" / "final" / name / array).read_bytes() == \
                (run.layout.universe_final(name) / array).read_bytes(), (name, array)


@pytest.mark.parametrize("strategy, available, first_six", [
    ("chunked", None, [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]),
    ("universe", None, [(1, 1), (2, 1), (3, 1), (1, 2), (2, 2), (3, 2)]),
    ("auto", 1, [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]),          # no memory to spare: chunked
    ("auto", 1 << 50, [(1, 1), (2, 1), (3, 1), (1, 2), (2, 2), (3, 2)]),    # plenty: universe
])
def test_strategy_orders_tasks_by_priority(tmp_path, monkeypatch, strategy, available, first_six):
    from pipeline.tasks import ticks as tasks

    (tmp_path / "in").mkdir()
    shutil.copy(REAL, tmp_path / "in")
    path = recipe(tmp_path, "*.csv", [1, 5, 15], [2], name=f"{strategy}-{available}")
    path.write_text(path.read_text().replace("min_count = 5", f'min_count = 5\nstrategy = "{strategy}"'))
    monkeypatch.setattr(tasks.psutil, "virtual_memory", lambda: type("Memory", (), {"available": available}))
    jobs = [tasks.AnalyseChunk(recipe=str(path), chunk=c, universe=u) for u in (1, 2, 3) for c in (1, 2, 3)]
    ordered = sorted(jobs, key=lambda job: -job.priority)
    assert [(job.chunk, job.universe) for job in ordered][:6] == first_six
