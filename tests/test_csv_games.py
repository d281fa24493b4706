"""The csv_games kind on the real Splendor game logs, and the re-runnable merge semantics."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import luigi
import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA

from pipeline.engine import frames
from pipeline.engine.plan import forget_plans
from pipeline.kinds.csv_games import KIND, read
from pipeline.recipe import RecipeError, load_recipe
from pipeline.tasks import BuildBatches, BuildDataset, Cleanup, MergeBatches

ROOT = Path(__file__).resolve().parents[1]
DATA = SHARED_DATA / "splendor"
SAMPLE = ROOT / "samples" / "splendor.toml"
GAMES = {"2_games/1.csv": 72, "3_games/2.csv": 93, "4_games/3.csv": 104}
HEADS = ["action_type", "card_reservation", "card_selection", "gem_take2", "gem_take3", "gems_removed",
         "noble_selection"]
SPLITS = ("train", "val", "test")


def write_recipe(folder: Path, input_dir: Path, **replace: str) -> Path:
    """The sample recipe reading ``input_dir`` and writing below ``folder``, with lines replaced."""
    text = SAMPLE.read_text()
    text = text.replace('input_dir = "splendor"', f'input_dir = "{input_dir}"')
    text = text.replace('output_dir = "../out/splendor-demo"', f'output_dir = "{folder / "out"}"')
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = folder / "splendor.toml"
    path.write_text(text)
    return path


def run(task_class: type, recipe: Path) -> bool:
    """Run one task (and what it needs) in-process with the local scheduler."""
    forget_plans()
    return luigi.build([task_class(recipe=str(recipe))], local_scheduler=True, workers=1, log_level="WARNING")


RUN_RECORDS = ("monitor", "report", ".pipeline-output.json")


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Inode and mtime of every data file below ``folder`` (run records and the report aside)."""
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.relative_to(folder).parts[0] not in RUN_RECORDS}


def group_of(relative: str) -> int:
    """The group id of a game file, computed here from its relative path (blake2b, 8 bytes, little endian)."""
    return int.from_bytes(hashlib.blake2b(relative.encode(), digest_size=8).digest(), "little")


def load_final(final: Path) -> dict:
    arrays = {}
    for split in SPLITS:
        arrays[f"X_{split}"] = np.load(final / f"X_{split}.npy", allow_pickle=False)
        arrays[f"groups_{split}"] = np.load(final / f"groups_{split}.npy", allow_pickle=False)
        for stem in ("labels", "masks"):
            with np.load(final / f"{stem}_{split}.npz", allow_pickle=False) as data:
                arrays[f"{stem}_{split}"] = {key: data[key] for key in data.files}
    return arrays


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The sample recipe run end to end on the real files, with empty fields and with literal nan."""
    finals = {}
    for variant in ("games", "games_nan_literal"):
        folder = tmp_path_factory.mktemp(variant)
        recipe = write_recipe(folder, DATA / variant)
        assert run(BuildDataset, recipe)
        finals[variant] = folder / "out" / "final"
    return finals


def test_reader_rows_labels_and_masks_match_the_csv():
    settings = load_recipe(SAMPLE).kind_settings
    for relative, rows in GAMES.items():
        raw = pd.read_csv(DATA / "games" / relative)
        result = read(DATA / "games" / relative, settings)
        arrays = result.arrays
        assert result.records == rows == len(raw) and not result.errors
        assert np.isfinite(arrays["X"]).all()
        classes = ["build", "reserve", "take 2 tokens", "take 3 tokens"]
        assert arrays["action_type"].tolist() == [classes.index(a) for a in raw["action_type"]]
        selected = raw["card_selection"]
        assert arrays["card_selection"].tolist() == [-1 if pd.isna(v) else int(v) for v in selected]
        assert arrays["mask_card_selection"].tolist() == selected.notna().astype(int).tolist()
        assert arrays["gem_take3"].shape == (rows, 5)
        np.testing.assert_array_equal(arrays["gem_take3"], raw.filter(like="gem_take3_").fillna(0).to_numpy())
        assert arrays["mask_gem_take3"].tolist() == raw["gem_take3_white"].notna().astype(int).tolist()
        names = result.metadata["feature_cols"]
        players = raw["num_players"].iloc[0]
        assert arrays["X"][:, names.index(f"num_players_{players}")].tolist() == [1] * rows
        absent = raw["noble4_vp"].isna().astype(int).tolist()
        assert arrays["X"][:, names.index("noble4_vp_missing")].tolist() == absent
        assert not {"game_id", "card_selection", "player0_position"} & set(names)
        literal = read(DATA / "games_nan_literal" / relative, settings).arrays
        for name, array in arrays.items():
            np.testing.assert_array_equal(literal[name], array)


def test_bad_rows_are_recorded_and_dropped(tmp_path):
    raw = (DATA / "games" / "2_games" / "1.csv").read_text().splitlines()
    raw[3] = raw[3].replace("take 2 tokens", "pass").replace("take 3 tokens", "pass")
    (tmp_path / "g.csv").write_text("\n".join(raw) + "\n")
    result = read(tmp_path / "g.csv", load_recipe(SAMPLE).kind_settings)
    assert result.records == 71 and len(result.arrays["X"]) == 71
    assert [(e.line, e.error) for e in result.errors] == [(4, "BadValue")]
    assert "action_type" in result.errors[0].message


def test_each_bad_row_loses_only_itself_with_its_line(tmp_path):
    """A wrong type, too many or too few fields, an oversize field and a truncated last row: one row each."""
    settings = load_recipe(SAMPLE).kind_settings
    lines = (DATA / "games" / "2_games" / "1.csv").read_text().splitlines()
    header = lines[0].split(",")
    turn = header.index("turn_number")

    def edit(line: int, column: int, value: str) -> None:
        fields = lines[line - 1].split(",")
        fields[column] = value
        lines[line - 1] = ",".join(fields)

    edit(4, turn, "four")
    lines[5] += ",extra"
    lines[7] = lines[7].rsplit(",", 1)[0]
    edit(10, header.index("game_id"), "x" * (2 << 20))
    lines.insert(11, "")  # a blank line: lines below are numbered as they are in the file
    text = "\n".join(lines)
    (tmp_path / "g.csv").write_text(text[:text.rindex(",")])  # the last row cut short, no line end
    result = read(tmp_path / "g.csv", settings)
    assert [(e.line, e.error) for e in result.errors] == [
        (4, "BadValue"), (6, "RaggedRow"), (8, "RaggedRow"), (10, "RowTooLong"), (74, "RaggedRow")]
    assert result.errors[0].message == "turn_number: 'four' is not a number"
    assert result.errors[1].message == f"row has {len(header) + 1} fields, the header {len(header)}"
    assert result.errors[3].message.startswith(f"row is {len(lines[9])} bytes, more than the limit of 1048576")
    whole = read(DATA / "games" / "2_games" / "1.csv", settings)
    kept = result.arrays["source_row"]
    assert result.records == len(kept) == 67 and kept.dtype == np.int64
    assert sorted(set(range(72)) - set(kept.tolist())) == [2, 4, 6, 8, 71]
    assert whole.arrays["source_row"].tolist() == list(range(72))
    for name, array in whole.arrays.items():
        np.testing.assert_array_equal(result.arrays[name], array[kept], err_msg=name)
    assert result.metadata == whole.metadata


def test_quoted_fields_and_an_unclosed_quote(tmp_path):
    settings = {name: setting.default for name, setting in KIND.settings.items()}
    settings |= {"feature_columns": ["a", "b"], "label_columns": {"label": {"type": "categorical", "classes": [0, 1]}}}
    (tmp_path / "q.csv").write_text('a,b,note,label\r\n1,2,x,0\r\n3,oops,y,1\r\n"5",6,"two\r\nlines",0\r\n'
                                    '7,8,z,1,extra\r\n\r\n9,10,"say ""hi""",1\r\n11,12,"never closed,0\r\n')
    result = read(tmp_path / "q.csv", settings)
    assert [(e.line, e.error) for e in result.errors] == [(3, "BadValue"), (6, "RaggedRow"), (9, "UnclosedQuote")]
    assert result.arrays["X"].tolist() == [[1, 2], [5, 6], [9, 10]]
    assert result.arrays["source_row"].tolist() == [0, 2, 4] and result.arrays["label"].tolist() == [0, 0, 1]
    (tmp_path / "bad.csv").write_text("a,b,note,label\n1,x,y,0\n")
    lost = read(tmp_path / "bad.csv", settings)
    assert lost.records == 0 and lost.arrays["X"].shape == (0, 2) and [e.line for e in lost.errors] == [2]
    (tmp_path / "ragged.csv").write_text("a,b,note,label\n1,2\n")
    lost = read(tmp_path / "ragged.csv", settings)
    assert lost.records == 0 and lost.arrays["X"].shape == (0, 2) and [e.error for e in lost.errors] == ["RaggedRow"]


def test_bad_recipe_is_refused(tmp_path):
    recipe = write_recipe(tmp_path, DATA / "games",
                          **{'type = "categorical"\nclasses = ["build"': 'type = "class"\nclasses = ["build"'})
    with pytest.raises(RecipeError, match="action_type"):
        load_recipe(recipe)


def test_end_to_end_rows_groups_and_no_nan(built):
    final = built["games"]
    arrays = load_final(final)
    stats = json.loads((final / "stats.json").read_text())
    assert stats["rows"]["total"] == sum(GAMES.values()) == 269
    groups = {group_of(relative): rows for relative, rows in GAMES.items()}
    seen = set()
    for split in SPLITS:
        ids = set(np.unique(arrays[f"groups_{split}"]).tolist())
        assert not ids & seen, "a game is in two splits"
        seen |= ids
        assert len(arrays[f"X_{split}"]) == sum(groups[g] for g in ids) == stats["rows"][split]
        assert np.isfinite(arrays[f"X_{split}"]).all()
        assert sorted(arrays[f"labels_{split}"]) == HEADS and sorted(arrays[f"masks_{split}"]) == HEADS
        for head in HEADS:
            rows = len(arrays[f"X_{split}"])
            assert len(arrays[f"labels_{split}"][head]) == len(arrays[f"masks_{split}"][head]) == rows
            assert np.isfinite(arrays[f"labels_{split}"][head]).all()
    assert seen == set(groups)


def test_label_mappings_and_feature_cols(built):
    final = built["games"]
    mappings = json.loads((final / "label_mappings.json").read_text())
    assert sorted(mappings) == HEADS
    assert mappings["action_type"]["classes"] == ["build", "reserve", "take 2 tokens", "take 3 tokens"]
    assert mappings["noble_selection"]["classes"][0] == -1
    assert mappings["gems_removed"]["columns"] == [f"gems_removed_{c}" for c in
                                                   ("white", "blue", "green", "red", "black", "gold")]
    names = json.loads((final / "feature_cols.json").read_text())
    assert len(names) == len(set(names)) == np.load(final / "X_train.npy").shape[1]
    train = load_final(final)
    codes = np.concatenate([train[f"labels_{s}"]["action_type"] for s in SPLITS])
    texts = pd.concat(pd.read_csv(DATA / "games" / r)["action_type"] for r in GAMES)
    assert sorted(np.array(mappings["action_type"]["classes"])[codes].tolist()) == sorted(texts.tolist())


def test_normalisation_uses_train_rows_only(built):
    final = built["games"]
    norm = json.loads((final / "normalization.json").read_text())
    names = json.loads((final / "feature_cols.json").read_text())
    arrays = load_final(final)
    train_ids = set(np.unique(arrays["groups_train"]).tolist())
    frames = {r: pd.read_csv(DATA / "games" / r) for r in GAMES}
    train = pd.concat([f for r, f in frames.items() if group_of(r) in train_ids])
    everything = pd.concat(frames.values())
    raw = [n for n in names if n in train.columns]
    expected = train[raw].fillna(0).astype(float)
    mean = np.array(norm["mean"])[[names.index(n) for n in raw]]
    std = np.array(norm["std"])[[names.index(n) for n in raw]]
    np.testing.assert_allclose(mean, expected.mean().to_numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(std, expected.std(ddof=0).to_numpy(), rtol=1e-9, atol=1e-9)
    assert not np.allclose(mean, everything[raw].fillna(0).mean().to_numpy()), "statistics include other splits"
    chosen = np.array(norm["normalize"])
    assert not chosen[[names.index(n) for n in names if n.endswith("_missing") or n.startswith("num_players_")]].any()
    column = names.index("turn_number")
    assert chosen[column]
    test_game = next(f for r, f in frames.items() if group_of(r) in set(arrays["groups_test"].tolist()))
    np.testing.assert_allclose(arrays["X_test"][:, column],
                               (test_game["turn_number"] - norm["mean"][column]) / norm["std"][column], rtol=1e-5)


def test_nan_literal_gives_the_same_bytes(built):
    for name in sorted(os.listdir(built["games"])):
        if name not in ("stats.json", "manifest.json"):
            assert (built["games"] / name).read_bytes() == (built["games_nan_literal"] / name).read_bytes(), name


def test_batch_stage_alone_then_merge_alone_without_reprocessing(tmp_path):
    recipe = write_recipe(tmp_path, DATA / "games")
    out = tmp_path / "out"
    assert run(BuildBatches, recipe)
    assert sorted(p.name for p in (out / "intermediate").iterdir()) == [
        f"batch_{i:04d}.{ext}" for i in range(3) for ext in ("frames", "json")]
    assert not (out / "merged").exists() and not (out / "final").exists()

    assert run(BuildDataset, recipe)
    for folder in ("merged", "final"):
        for path in (out / folder).iterdir():
            path.unlink()
        (out / folder).rmdir()
    before = snapshot(out / "intermediate")
    assert run(MergeBatches, recipe)
    assert (out / "merged" / "manifest.json").is_file() and not (out / "final").exists()
    assert snapshot(out / "intermediate") == before, "a batch was re-processed"


def test_changed_split_settings_rerun_the_split_only(tmp_path):
    recipe = write_recipe(tmp_path, DATA / "games")
    out = tmp_path / "out"
    assert run(BuildDataset, recipe)
    before = {f: snapshot(out / f) for f in ("intermediate", "merged")}
    old_splits = [set(np.load(out / "final" / f"groups_{s}.npy").tolist()) for s in SPLITS]
    recipe = write_recipe(tmp_path, DATA / "games",
                          **{"seed = 31": "seed = 57", "normalize = true": "normalize = false"})
    assert run(BuildDataset, recipe)
    assert {f: snapshot(out / f) for f in ("intermediate", "merged")} == before
    assert not (out / "final" / "normalization.json").exists(), "stale output of the old settings left in final/"
    new_splits = [set(np.load(out / "final" / f"groups_{s}.npy").tolist()) for s in SPLITS]
    assert new_splits != old_splits and set().union(*new_splits) == {group_of(r) for r in GAMES}


def test_cleanup_refuses_before_final_outputs_exist(tmp_path):
    recipe = write_recipe(tmp_path, DATA / "games")
    out = tmp_path / "out"
    assert run(BuildBatches, recipe)
    before = snapshot(out)
    assert not run(Cleanup, recipe)
    assert snapshot(out) == before
    assert run(BuildDataset, recipe) and run(Cleanup, recipe)
    assert sorted(p.name for p in out.iterdir() if p.name not in RUN_RECORDS) == ["final", "records"]
    assert np.load(out / "final" / "X_train.npy").shape[0] > 0


def test_truncated_or_corrupt_batch_is_rebuilt_alone(tmp_path):
    recipe = write_recipe(tmp_path, DATA / "games")
    out, batches = tmp_path / "out", tmp_path / "out" / "intermediate"
    assert run(BuildBatches, recipe)
    truncated, flipped = batches / "batch_0001.frames", batches / "batch_0002.frames"
    whole = {}  # frames that end before the damage: kept by the rebuild
    for path in (truncated, flipped):
        with open(path, "rb") as handle:
            whole[path.stem] = sum(f.offset + f.size <= path.stat().st_size // 2 for f in frames.scan(handle)[0])
    with open(truncated, "r+b") as handle:
        handle.truncate(truncated.stat().st_size // 2)
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    before = snapshot(batches)
    assert run(BuildDataset, recipe)
    after = snapshot(batches)
    assert after["batch_0000.frames"] == before["batch_0000.frames"]
    assert after["batch_0001.frames"] != before["batch_0001.frames"]
    assert after["batch_0002.frames"] != before["batch_0002.frames"]
    for stem, kept in whole.items():
        assert json.loads((batches / f"{stem}.json").read_text())["facts"]["files_reused"] == kept
    for index in range(3):
        name = f"batch_{index:04d}.frames"
        record = json.loads((batches / name).with_suffix(".json").read_text())  # a stage record
        assert (batches / name).stat().st_size == record["outputs"][name]["size"]
    assert json.loads((out / "final" / "stats.json").read_text())["rows"]["total"] == 269


def test_synthetic_logs_have_the_real_shape(tmp_path):
    from pipeline.synthetic.csv_games import write_corpus

    paths = write_corpus(tmp_path, 6, missing="nan")
    real = (DATA / "games" / "2_games" / "1.csv").read_text().splitlines()[0]
    settings = load_recipe(SAMPLE).kind_settings
    assert sorted(str(p.relative_to(tmp_path)) for p in paths) == [
        f"{n}_games/{i}.csv" for n in (2, 3, 4) for i in (1, 2)]
    for path in paths:
        assert path.read_text().splitlines()[0] == real
        raw = pd.read_csv(path)
        result = read(path, settings)
        assert result.records == len(raw) and not result.errors and np.isfinite(result.arrays["X"]).all()
        seats = raw["num_players"].iloc[0]
        assert raw[f"player{seats - 1}_vp"].notna().all() and raw.filter(like=f"player{seats}_").isna().all().all()
        assert (raw["card_selection"].notna() == (raw["action_type"] == "build")).all()


def test_group_column_mask_columns_and_fill(tmp_path):
    games = tmp_path / "games"
    for folder, game in (("a", 7), ("b", 7), ("c", 8)):
        (games / folder).mkdir(parents=True)
        (games / folder / "1.csv").write_text(f"game_id,x,legal_0,legal_1,move\n{game},1,1,0,0\n{game},,1,1,1\n")
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
[dataset]
name = "t"
kind = "csv_games"
input_dir = "{games}"
output_dir = "{tmp_path / 'out'}"
[process]
feature_columns = ["x"]
fill = {{x = -1}}
missing_indicators = ["x"]
group_column = "game_id"
mask_columns = {{move = ["legal_*"], any_legal = "legal_1"}}
[process.label_columns.move]
type = "categorical"
classes = [0, 1]
""")
    settings = load_recipe(recipe).kind_settings
    results = {f: read(games / f / "1.csv", settings) for f in "abc"}
    a = results["a"]
    assert a.metadata["feature_cols"] == ["x", "x_missing"]
    assert a.arrays["X"].tolist() == [[1, 0], [-1, 1]]
    assert a.arrays["mask_move"].tolist() == [[1, 0], [1, 1]] and a.arrays["mask_any_legal"].tolist() == [0, 1]
    assert a.arrays["move"].tolist() == [0, 1]
    assert results["a"].arrays["group"][0] == results["b"].arrays["group"][0] != results["c"].arrays["group"][0]
    assert run(BuildDataset, recipe)
    masks = np.load(tmp_path / "out" / "final" / "masks_train.npz")
    assert set(masks.files) == {"move", "any_legal"}


def columns_recipe(tmp_path: Path, games: Path, files_per_batch: int = 500) -> Path:
    """A recipe over CSVs of ``x_*`` feature columns and a numeric label ``y``."""
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
[dataset]
name = "t"
kind = "csv_games"
input_dir = "{games}"
output_dir = "{tmp_path / 'out'}"
[process]
feature_columns = ["x_*"]
[process.label_columns.y]
type = "numeric"
[batch]
files_per_batch = {files_per_batch}
""")
    return recipe


def test_a_file_with_other_columns_is_recorded_not_merged(tmp_path):
    games = tmp_path / "games"
    games.mkdir()
    (games / "a.csv").write_text("x_1,y\n1,0\n2,1\n")
    (games / "b.csv").write_text("x_2,y\n5,0\n")  # as wide as a.csv, other column
    assert run(BuildDataset, columns_recipe(tmp_path, games))
    final = tmp_path / "out" / "final"
    stats = json.loads((final / "stats.json").read_text())
    assert stats["rows"]["total"] == 2 and stats["files"]["failed"] == 1
    assert [(f["file"], f["error"]) for f in stats["failures"]["records"]] == [("b.csv", "MetadataMismatch")]
    assert json.loads((final / "feature_cols.json").read_text()) == ["x_1"]


@pytest.mark.parametrize("files_per_batch", [1, 2, 500])
def test_the_layout_most_files_share_wins_whatever_the_batching(tmp_path, files_per_batch):
    games = tmp_path / "games"
    games.mkdir()
    (games / "a.csv").write_text("x_2,y\n5,0\n6,1\n7,0\n")  # sorts first, the odd one out
    (games / "b.csv").write_text("x_1,y\n1,0\n")
    (games / "c.csv").write_text("x_1,y\n2,1\n3,0\n")
    assert run(BuildDataset, columns_recipe(tmp_path, games, files_per_batch))
    final = tmp_path / "out" / "final"
    stats = json.loads((final / "stats.json").read_text())
    assert stats["rows"]["total"] == 3 and stats["files"] == {"discovered": 3, "processed": 2, "failed": 1}
    assert [(f["file"], f["error"]) for f in stats["failures"]["records"]] == [("a.csv", "MetadataMismatch")]
    assert json.loads((final / "feature_cols.json").read_text()) == ["x_1"]
