"""Recipe validation: everything wrong is refused before any work, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import hex_recipe, write_recipe

from pipeline.engine.layout import OWNER_FILE, claim
from pipeline.recipe import RecipeError, load_recipe


@pytest.mark.parametrize("overrides, message", [
    ({"dataset": {"colour": "blue"}}, "[dataset] unknown key 'colour'"),
    ({"process": {"position_selector": "middle"}}, "[process] position_selector = 'middle' must be one of"),
    ({"process": {"board_size": 40}}, "[process] board_size = 40 must be between 1 and 26"),
    ({"process": {"on_error": "ignore"}}, "[process] on_error = 'ignore' must be one of 'skip', 'fail'"),
    ({"batch": {"files_per_batch": 0}}, "[batch] files_per_batch = 0 must be 1 or more"),
    ({"batch": {"files_per_batch": "10"}}, "[batch] files_per_batch = '10' must be an integer"),
    ({"batch": {"files_per_batch": True}}, "[batch] files_per_batch = True must be an integer"),
    ({"split": {"train": 0.5}}, "[split] train + val + test = 0.9, must sum to 1"),
    ({"split": {"val": -0.1, "train": 0.9}}, "[split] val = -0.1 must be between 0 and 1"),
    ({"extra": {"a": 1}}, "unknown table [extra]"),
    ({"dataset": {"kind": "parquet"}}, "[dataset] kind: unknown kind 'parquet'"),
    ({"dataset": {"kind": "nosuchmodule:read"}}, "cannot load plug-in kind 'nosuchmodule:read'"),
])
def test_bad_values_are_refused_naming_the_key(tmp_path, shared_data, overrides, message):
    with pytest.raises(RecipeError) as caught:
        load_recipe(hex_recipe(tmp_path, shared_data / "hex", **overrides))
    assert message in str(caught.value)
    assert str(tmp_path) in str(caught.value), "the message names the recipe file"


def test_missing_keys_and_input_folder_are_refused(tmp_path, shared_data):
    recipe = write_recipe(tmp_path / "r.toml", dataset={"name": "x", "kind": "trmph", "output_dir": "out"})
    with pytest.raises(RecipeError, match=r"\[dataset\] missing key 'input_dir'"):
        load_recipe(recipe)
    recipe = hex_recipe(tmp_path, tmp_path / "nowhere")
    with pytest.raises(RecipeError, match="input_dir .*nowhere is not a folder"):
        load_recipe(recipe)
    (tmp_path / "bad.toml").write_text("[dataset\nname = 1")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(tmp_path / "bad.toml")
    with pytest.raises(RecipeError, match="cannot read recipe"):
        load_recipe(tmp_path / "absent.toml")


def test_defaults_and_relative_paths(tmp_path, shared_data):
    (tmp_path / "data").mkdir()
    recipe = write_recipe(tmp_path / "r.toml", dataset={
        "name": "x", "kind": "trmph", "input_dir": "data", "output_dir": "out"})
    loaded = load_recipe(recipe)
    assert loaded.input_dir == tmp_path / "data" and loaded.output_dir == tmp_path / "out"
    assert loaded.on_error == "skip" and loaded.files_per_batch == 500
    assert loaded.kind_settings == {"position_selector": "all", "board_size": 13, "repeated_moves": "truncate",
                                    "legacy_winners": True, "board_size_mismatch": "reject"}
    assert dict(loaded.split) == {"train": 0.8, "val": 0.1, "test": 0.1, "seed": 0, "normalize": False}


def test_output_inside_input_is_refused(tmp_path):
    recipe = write_recipe(tmp_path / "r.toml", dataset={
        "name": "x", "kind": "trmph", "input_dir": ".", "output_dir": "out"})
    with pytest.raises(RecipeError, match="is inside the input folder"):
        load_recipe(recipe)


@pytest.mark.parametrize(("input_dir", "output_dir", "reason"), [
    ("data", "/", "is the root folder"),
    ("data", "~", "is the home folder"),
    ("data", "data", "is the input folder"),
    ("data/final", ".", "contains the input folder"),
    ("data", "thesis", "files that this pipeline did not write"),
])
def test_output_dirs_that_would_touch_user_data_are_refused(tmp_path, input_dir, output_dir, reason):
    (tmp_path / input_dir).mkdir(parents=True)
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "final").mkdir()
    (tmp_path / "thesis" / "final" / "thesis.txt").write_text("years of work")
    output = str(Path.home()) if output_dir == "~" else output_dir
    recipe = write_recipe(tmp_path / "r.toml", dataset={
        "name": "x", "kind": "trmph", "input_dir": input_dir, "output_dir": output})
    with pytest.raises(RecipeError, match=reason):
        load_recipe(recipe)
    assert (tmp_path / "thesis" / "final" / "thesis.txt").read_text() == "years of work"


def test_an_output_folder_the_pipeline_claimed_is_accepted_again(tmp_path):
    (tmp_path / "data").mkdir()
    claim(tmp_path / "out", "x")
    (tmp_path / "out" / "final").mkdir()
    recipe = write_recipe(tmp_path / "r.toml", dataset={
        "name": "x", "kind": "trmph", "input_dir": "data", "output_dir": "out"})
    assert load_recipe(recipe).output_dir == tmp_path / "out"


def test_a_claim_killed_mid_write_is_taken_up_again_but_nothing_else_is(tmp_path):
    """The crash soak's run 16: a kill while the owner file was written left only its temp in the folder."""
    (tmp_path / "data").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / f".{OWNER_FILE}.tmp-vm-11213-c6a236da").write_text("{")
    recipe = write_recipe(tmp_path / "r.toml", dataset={
        "name": "x", "kind": "trmph", "input_dir": "data", "output_dir": "out"})
    assert load_recipe(recipe).output_dir == tmp_path / "out"
    (tmp_path / "out" / "notes.txt").write_text("mine")
    again = write_recipe(tmp_path / "again.toml", dataset={  # another file: recipes are cached by path and mtime
        "name": "x", "kind": "trmph", "input_dir": "data", "output_dir": "out"})
    with pytest.raises(RecipeError, match="files that this pipeline did not write"):
        load_recipe(again)


@pytest.mark.parametrize(("intermediate_dir", "reason"), [
    ("out", "is the output folder"),
    (".", "contains the output folder"),
    ("out/merged", "is inside the output folder"),
    ("data/batches", "is inside the input folder"),
    ("thesis", "files that this pipeline did not write"),
    (3, "= 3 must be a string"),
])
def test_intermediate_dirs_that_would_touch_other_files_are_refused(tmp_path, intermediate_dir, reason):
    (tmp_path / "data").mkdir()
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "thesis.txt").write_text("years of work")
    recipe = write_recipe(tmp_path / "r.toml", dataset={
        "name": "x", "kind": "trmph", "input_dir": "data", "output_dir": "out", "intermediate_dir": intermediate_dir})
    with pytest.raises(RecipeError, match=r"\[dataset\] intermediate_dir ?.*" + reason):
        load_recipe(recipe)


def test_intermediate_dir_defaults_to_the_output_folders_and_may_be_elsewhere(tmp_path):
    (tmp_path / "data").mkdir()
    tables = {"name": "x", "kind": "trmph", "input_dir": "data", "output_dir": "out"}
    for given, expected in ((None, None), ("out/intermediate", None), ("scratch", tmp_path / "scratch")):
        recipe = write_recipe(tmp_path / "r.toml", dataset={**tables, **({"intermediate_dir": given} if given else {})})
        assert load_recipe(recipe).intermediate_dir == expected, given
