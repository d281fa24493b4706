"""build_batch's memory budget and checkpoint threshold change what is saved, never the batch file."""

from __future__ import annotations

import pytest
from conftest import hex_recipe

from pipeline.engine.batches import build_batch
from pipeline.engine.discovery import discover
from pipeline.engine.plan import make_plan
from pipeline.recipe import load_recipe
from pipeline.synthetic.hex import write_corpus


def batch_bytes_and_file_outputs(tmp_path, name: str, **settings) -> tuple[bytes, list[str]]:
    write_corpus(tmp_path / "in", files=4, games=3, size=5, seed=2)
    recipe = load_recipe(hex_recipe(tmp_path, tmp_path / "in", name=name, process={"board_size": 5},
                                    batch={"files_per_batch": 4}))
    plan = make_plan(recipe, discover(recipe.input_dir, recipe.pattern))
    record = build_batch(plan, plan.batches[0], **settings)
    assert record["files"] == 4 and record["rows"] > 0
    saved = sorted(p.name for p in plan.layout.files.rglob("*.npz")) if plan.layout.files.exists() else []
    return plan.layout.batch(0).read_bytes(), saved


@pytest.mark.parametrize("settings, saved", [
    ({"hold_bytes": 0, "checkpoint_s": 3600.0}, 4),  # nothing fits in memory: every file saved and read back
    ({"hold_bytes": 1 << 30, "checkpoint_s": 3600.0}, 0),  # all held, all cheap: no per-file outputs
    ({"hold_bytes": 1 << 30, "checkpoint_s": 0.0}, 4),  # every file worth a checkpoint
])
def test_budget_and_threshold_decide_per_file_outputs_only(tmp_path, settings, saved):
    reference, every = batch_bytes_and_file_outputs(tmp_path, "reference")
    assert len(every) == 4, "the defaults save every file"
    ours, files = batch_bytes_and_file_outputs(tmp_path, "ours", **settings)
    assert len(files) == saved
    assert ours == reference
