"""The splendor kind against splendor_ia's own outputs: all 240 upstream games, row by row.

``check_final`` checks a whole ``final/`` folder (X normalised, labels, masks, the row
provenance) against the per-game references; the end-to-end test of the engine uses it.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.kinds import resolve
from pipeline.kinds.splendor import KIND, read
from pipeline.kinds.splendor.features import FEATURE_COLS
from pipeline.kinds.splendor.masks import HEADS

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the main checkout; a worktree (/work/wt/<name>) finds it one level further up.
SHARED = next((p / "shared" for p in ROOT.parents if (p / "shared" / "data").is_dir()), ROOT.parent / "shared")
UPSTREAM = SHARED / "data" / "splendor" / "upstream"
GAMES = UPSTREAM / "games"
FULL_RUN = UPSTREAM / "reference" / "full_run"
SPLITS = ("train", "val", "test")
SETTINGS = {"masking": True}


@functools.cache
def reference(file: str) -> dict[str, np.ndarray]:
    """Upstream's per-game output for an input file named by its path relative to the games folder."""
    path = Path(file)
    with np.load(UPSTREAM / "reference" / "per_game" / path.parent.name / f"{path.stem}.npz",
                 allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def check_final(final_dir: Path) -> int:
    """Assert every row of ``final_dir`` equals upstream's for its game and CSV row; returns the rows checked.

    Reads ``X_{split}.npy``, ``labels_{split}.npz``, ``masks_{split}.npz``, ``rows_{split}.parquet``
    (``file`` relative to the games folder, ``row`` the 0-based CSV data row) and ``normalization.json``
    as the engine writes it (``columns`` = X's, per column ``mean``, ``std``, ``normalize``): X must be
    upstream's features with the ``normalize`` columns standardised by those numbers, within float32
    rounding; the numbers must be the train rows' mean and population std (1 where that is 0); labels
    and masks must be equal.
    """
    norm = json.loads((final_dir / "normalization.json").read_text())
    assert norm["columns"] == FEATURE_COLS
    columns = np.flatnonzero(norm["normalize"])
    mean, scale = np.array(norm["mean"])[columns], np.array(norm["std"])[columns]
    checked, train_rows = 0, []
    for split in SPLITS:
        x = np.load(final_dir / f"X_{split}.npy")
        rows = pq.read_table(final_dir / f"rows_{split}.parquet").to_pydict()
        with np.load(final_dir / f"labels_{split}.npz", allow_pickle=False) as labels, \
                np.load(final_dir / f"masks_{split}.npz", allow_pickle=False) as masks:
            labels, masks = {h: labels[h] for h in HEADS}, {h: masks[h] for h in HEADS}
        assert len(rows["file"]) == len(x) and x.dtype == np.float32, split
        expected = np.empty((len(x), len(FEATURE_COLS)))
        for file in sorted(set(rows["file"])):
            at = np.flatnonzero(np.asarray(rows["file"]) == file)
            ref, csv_rows = reference(file), np.asarray(rows["row"])[at]
            expected[at] = ref["features"][csv_rows]
            for head in HEADS:
                np.testing.assert_array_equal(labels[head][at], ref[f"labels_{head}"][csv_rows], f"{file} {head}")
                np.testing.assert_array_equal(masks[head][at], ref[f"masks_{head}"][csv_rows], f"{file} {head}")
        if split == "train":
            train_rows = expected.copy()
        expected[:, columns] = (expected[:, columns] - mean) / scale
        np.testing.assert_allclose(x, expected, rtol=1e-6, atol=1e-6, err_msg=split)
        checked += len(x)
    train_std = train_rows[:, columns].std(axis=0)
    np.testing.assert_allclose(mean, train_rows[:, columns].mean(axis=0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(scale, np.where(train_std == 0, 1.0, train_std), rtol=1e-9, atol=1e-9)
    return checked


@pytest.fixture(scope="module")
def results() -> dict[str, object]:
    """The reader's result for every upstream game, by path relative to the games folder."""
    return {path.relative_to(GAMES).as_posix(): read(path, SETTINGS) for path in sorted(GAMES.glob("*_games/*.csv"))}


def test_every_upstream_game_equals_upstream_row_by_row(results):
    assert len(results) == 240
    for file, result in results.items():
        ref, arrays = reference(file), result.arrays
        assert not result.errors and result.records == len(ref["csv_row"]), file
        np.testing.assert_array_equal(arrays["source_row"], ref["csv_row"], file)
        assert arrays["X"].dtype == np.float32 and arrays["X"].shape == ref["features"].shape
        np.testing.assert_allclose(arrays["X"], ref["features"], rtol=1e-7, atol=0, err_msg=file)
        for head, width in HEADS.items():
            assert arrays[head].dtype.kind == "i" and arrays[f"mask_{head}"].dtype == np.int8
            assert arrays[f"mask_{head}"].shape == (len(ref["csv_row"]), width)
            np.testing.assert_array_equal(arrays[head], ref[f"labels_{head}"], f"{file} {head}")
            np.testing.assert_array_equal(arrays[f"mask_{head}"], ref[f"masks_{head}"], f"{file} {head}")


def test_metadata_and_normalised_columns_are_upstreams(results):
    metadata = next(iter(results.values())).metadata
    assert metadata["feature_cols"] == json.loads((FULL_RUN / "feature_cols.json").read_text())
    assert metadata["label_mappings"] == json.loads((FULL_RUN / "label_mappings.json").read_text())
    scaler = json.loads((FULL_RUN / "scaler.json").read_text())
    chosen = KIND.normalize_columns(SETTINGS, metadata)
    assert [metadata["feature_cols"][i] for i in chosen] == scaler["normalized_columns"]
    assert resolve("splendor") is KIND


def test_masking_off_gives_all_ones_and_the_same_rows():
    path = GAMES / "3_games" / "121.csv"
    on, off = read(path, SETTINGS).arrays, read(path, {"masking": False}).arrays
    for head in HEADS:
        assert (off[f"mask_{head}"] == 1).all() and (on[f"mask_{head}"] == 0).any()
        np.testing.assert_array_equal(on[head], off[head])
    np.testing.assert_array_equal(on["X"], off["X"])


def test_bad_rows_lose_only_themselves(tmp_path):
    source = GAMES / "2_games" / "1.csv"
    lines = source.read_text().splitlines()
    header = lines[0].split(",")
    ref = reference("2_games/1.csv")
    # A later turn buys card 11, which it cannot (an illegal label under its own mask).
    cannot = (ref["labels_action_type"] == 0) & (ref["masks_card_selection"][:, 11] == 0) & (ref["csv_row"] > 5)
    build = int(np.flatnonzero(cannot)[0])
    fields = lines[build + 1].split(",")
    fields[header.index("card_selection")] = "11"
    lines[build + 1] = ",".join(fields)
    lines[3] = lines[3].rsplit(",", 5)[0]                                  # data row 2: ragged
    fields = lines[5].split(",")
    fields[header.index("gems_board_red")] = "lots"                       # data row 4: not a number
    lines[5] = ",".join(fields)
    fields = lines[6].split(",")
    fields[header.index("card0_cost_red")] = "9"                          # data row 5: no such card
    lines[6] = ",".join(fields)
    path = tmp_path / "2_games" / "1.csv"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    result = read(path, SETTINGS)
    got = [(e.line, e.error) for e in result.errors]
    assert got == sorted([(4, "RaggedRow"), (6, "BadValue"), (7, "BadValue"), (build + 2, "IllegalLabel")])
    illegal = next(e for e in result.errors if e.error == "IllegalLabel")
    assert illegal.message.startswith("card_selection: class 11 is not a legal move here (legal: ")
    kept = np.setdiff1d(ref["csv_row"], [2, 4, 5, build])
    np.testing.assert_array_equal(result.arrays["source_row"], kept)
    np.testing.assert_array_equal(result.arrays["X"], ref["features"][kept].astype(np.float32))
    for head in HEADS:
        np.testing.assert_array_equal(result.arrays[f"mask_{head}"], ref[f"masks_{head}"][kept])


def test_files_that_are_not_upstream_logs_fail_with_one_line(tmp_path):
    header_only = tmp_path / "empty.csv"
    header_only.write_text((GAMES / "2_games" / "1.csv").read_text().splitlines()[0] + "\n")
    with pytest.raises(ValueError, match="no rows"):
        read(header_only, SETTINGS)
    other = tmp_path / "other.csv"
    other.write_text("game_id,turn\n1,2\n")
    with pytest.raises(ValueError, match="missing \\['num_players'"):
        read(other, SETTINGS)


def write_final(results: dict, folder: Path, split_of) -> Path:
    """A final/ folder as the engine writes it, from reader results split by ``split_of(file)``."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = {split: [f for f in sorted(results) if split_of(f) == split] for split in SPLITS}
    features = {split: np.concatenate([results[f].arrays["X"] for f in files]) for split, files in parts.items()}
    columns = KIND.normalize_columns(SETTINGS, next(iter(results.values())).metadata)
    mean = features["train"].astype(np.float64).mean(axis=0)
    std = features["train"].astype(np.float64).std(axis=0)
    std[std == 0] = 1
    for split, files in parts.items():
        x = features[split].copy()
        x[:, columns] = ((x[:, columns] - mean[columns]) / std[columns]).astype(np.float32)
        np.save(folder / f"X_{split}.npy", x)
        for kind, prefix in (("labels", ""), ("masks", "mask_")):
            np.savez(folder / f"{kind}_{split}.npz",
                     **{head: np.concatenate([results[f].arrays[prefix + head] for f in files]) for head in HEADS})
        rows = {"file": [f for f in files for _ in results[f].arrays["source_row"]],
                "row": np.concatenate([results[f].arrays["source_row"] for f in files])}
        pq.write_table(pa.table(rows), folder / f"rows_{split}.parquet")
    (folder / "feature_cols.json").write_text(json.dumps(FEATURE_COLS))
    chosen = np.zeros(len(FEATURE_COLS), dtype=bool)
    chosen[columns] = True
    (folder / "normalization.json").write_text(json.dumps({"columns": FEATURE_COLS, "mean": mean.tolist(),
                                                           "std": std.tolist(), "normalize": chosen.tolist()}))
    return folder


def by_players(file: str) -> str:
    return {"2_games": "train", "3_games": "val", "4_games": "test"}[file.split("/")[0]]


def test_check_final_accepts_the_readers_rows_and_catches_a_wrong_one(results, tmp_path):
    final = write_final(results, tmp_path / "final", by_players)
    assert check_final(final) == sum(result.records for result in results.values())
    x = np.load(final / "X_val.npy")
    x[10, 3] += 0.01
    np.save(final / "X_val.npy", x)
    with pytest.raises(AssertionError):
        check_final(final)


def test_final_files_are_upstreams_reports(results, tmp_path):
    some = {f: results[f] for f in list(results)[::8]}
    final = write_final(some, tmp_path / "final", by_players)
    stats = {"rows": {}, "failures": {"by_reason": {"IllegalLabel": 2}, "records": []}, "files": 30, "records": 0}
    files = KIND.final_files(final, stats)
    prep, report = files["preprocessing_stats.json"], files["mask_validation_report.json"]
    upstream_prep = json.loads((FULL_RUN / "preprocessing_stats.json").read_text())
    upstream_report = json.loads((FULL_RUN / "mask_validation_report.json").read_text())
    assert prep.keys() == upstream_prep.keys()
    assert report.keys() - {"dropped_by_reason"} == upstream_report.keys()
    assert report["dropped_by_reason"] == {"IllegalLabel": 2}
    parts = {split: [r for f, r in some.items() if by_players(f) == split] for split in SPLITS}
    sizes = {split: sum(r.records for r in rs) for split, rs in parts.items()}
    assert (prep["train_size"], prep["val_size"], prep["test_size"]) == (sizes["train"], sizes["val"], sizes["test"])
    assert prep["total_samples"] == sum(sizes.values()) and prep["input_dim"] == prep["num_features"] == 422
    for split, rs in parts.items():
        assert prep["action_type_distribution"][split] == [a for r in rs for a in r.arrays["action_type"].tolist()]
    for head in HEADS:
        sums = np.concatenate([r.arrays[f"mask_{head}"] for r in parts["train"]]).sum(axis=1)
        stat = prep["mask_statistics"][head]
        assert (stat["min_legal_actions"], stat["max_legal_actions"]) == (sums.min(), sums.max())
        assert stat["avg_legal_actions"] == pytest.approx(sums.mean())
        labels = np.concatenate([r.arrays[head] for r in parts["train"]])
        assert report[head] == {"shape_valid": True, "binary_values": True, **stat, "illegal_count": 0,
                                "valid_labels_count": int((labels != -1).sum()), "legal_rate": 100.0}
    assert (report["overall_status"], report["total_failures"]) == ("PASSED", 0)
    # An illegal labelled action in train is counted, as upstream's validate_masks does.
    with np.load(final / "masks_train.npz") as masks:
        masks = {head: masks[head].copy() for head in HEADS}
    with np.load(final / "labels_train.npz") as labels:
        masks["gem_take2"][np.flatnonzero(labels["gem_take2"] >= 0)[0], :] = 0
    np.savez(final / "masks_train.npz", **masks)
    report = KIND.final_files(final, stats)["mask_validation_report.json"]
    assert (report["overall_status"], report["total_failures"], report["gem_take2"]["illegal_count"]) == (
        "FAILED", 1, 1)
    shutil.rmtree(final)
