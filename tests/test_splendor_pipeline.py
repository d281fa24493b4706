"""The splendor kind through the engine: samples/splendor_ia.toml over upstream's 240 games, row by row.

Also the upstream bug report's validation steps in this project's commands: batches only,
merge alone, cleanup, an intermediate folder elsewhere, and the commands' help.
"""

from __future__ import annotations

import json
from pathlib import Path

import luigi
import numpy as np
import pyarrow.parquet as pq
from test_splendor import FULL_RUN, GAMES, check_final

from pipeline.engine.plan import forget_plans
from pipeline.kinds.splendor.masks import HEADS
from pipeline.tasks import SplitDataset

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "splendor_ia.toml"
SPLITS = ("train", "val", "test")


def sample_recipe(folder: Path, input_dir: Path, *extra: str) -> Path:
    """The shipped recipe reading ``input_dir`` and writing ``folder/out``, with ``extra`` lines in [dataset]."""
    text = SAMPLE.read_text()
    output = "\n".join([f'output_dir = "{folder / "out"}"', *extra])
    for old, new in ((' = "splendor_ia"', f' = "{input_dir}"'), ('output_dir = "../out/splendor-ia-demo"', output)):
        assert old in text
        text = text.replace(old, new)
    path = folder / "splendor_ia.toml"
    path.write_text(text)
    return path


def run(task: luigi.Task) -> bool:
    """Run ``task`` (and what it needs) in-process with the local scheduler."""
    forget_plans()
    return luigi.build([task], local_scheduler=True, workers=1, log_level="WARNING")


def test_the_sample_recipe_over_all_upstream_games_is_upstreams_dataset(tmp_path):
    recipe = sample_recipe(tmp_path, GAMES)
    assert run(SplitDataset(recipe=str(recipe)))
    final = tmp_path / "out" / "final"
    rows = {split: pq.read_table(final / f"rows_{split}.parquet") for split in SPLITS}
    assert all(str(table.schema.field("file").type) == "dictionary<values=string, indices=int32, ordered=0>"
               for table in rows.values())
    games = {file for table in rows.values() for file in table.column("file").to_pylist()}
    assert games == {path.relative_to(GAMES).as_posix() for path in GAMES.glob("*_games/*.csv")}
    assert len(games) == 240
    assert check_final(final) == sum(table.num_rows for table in rows.values())
    assert json.loads((final / "feature_cols.json").read_text()) == json.loads(
        (FULL_RUN / "feature_cols.json").read_text())
    norm = json.loads((final / "normalization.json").read_text())
    chosen = [name for name, on in zip(norm["columns"], norm["normalize"], strict=True) if on]
    assert chosen == json.loads((FULL_RUN / "scaler.json").read_text())["normalized_columns"]
    report = json.loads((final / "mask_validation_report.json").read_text())
    assert (report["overall_status"], report["total_failures"]) == ("PASSED", 0)
    for head in HEADS:
        assert (report[head]["legal_rate"], report[head]["illegal_count"]) == (100.0, 0), head
    stats = json.loads((final / "stats.json").read_text())
    assert stats["records"]["failed"] == 0 and stats["files"]["failed"] == 0
    manifest = json.loads((final / "manifest.json").read_text())
    assert {f"rows_{split}.parquet" for split in SPLITS} <= manifest["files"].keys()
    for split in SPLITS:
        assert len(np.load(final / f"X_{split}.npy", mmap_mode="r")) == rows[split].num_rows
