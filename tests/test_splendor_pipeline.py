"""The splendor kind through the engine: samples/splendor_ia.toml over upstream's 240 games, row by row.

Also the upstream bug report's validation steps in this project's commands: batches only,
merge alone, cleanup, an intermediate folder elsewhere, and the commands' help.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import luigi
import numpy as np
import pyarrow.parquet as pq
from conftest import luigi_env
from test_splendor import FULL_RUN, GAMES, check_final

from pipeline.engine.plan import forget_plans
from pipeline.kinds.splendor.masks import HEADS
from pipeline.tasks import BuildBatches, BuildDataset, MergeBatches, SplitDataset

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "splendor_ia.toml"
SAMPLE_GAMES = ROOT / "samples" / "splendor_ia"
SPLITS = ("train", "val", "test")
PIPELINE_FOLDERS = {"intermediate", "merged"}


def sample_recipe(folder: Path, input_dir: Path, *extra: str) -> Path:
    """The shipped recipe reading ``input_dir`` and writing ``folder/out``, with ``extra`` lines in [dataset]."""
    text = SAMPLE.read_text()
    output = "\n".join([f'output_dir = "{folder / "out"}"', *extra])
    for old, new in ((' = "splendor_ia"', f' = "{input_dir}"'), ('output_dir = "../out/splendor-ia-demo"', output)):
        assert old in text
        text = text.replace(old, new)
    folder.mkdir(parents=True, exist_ok=True)
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


def batch_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("batch_*"))


def help_text(task: str) -> str:
    done = subprocess.run([sys.executable, "-m", "luigi", "--module", "pipeline", task, "--help"], cwd=ROOT,
                          env=luigi_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return " ".join(done.stdout.split())


def test_the_upstream_bug_reports_validation_steps(tmp_path):
    recipe = str(sample_recipe(tmp_path / "cleaned", SAMPLE_GAMES))
    out = tmp_path / "cleaned" / "out"
    # Batches only (no merge) leave intermediate/ files: 12 games, 4 per batch.
    assert run(BuildBatches(recipe=recipe))
    batches = [f"batch_{index:04d}.{suffix}" for index in range(3) for suffix in ("frames", "json")]
    assert batch_files(out / "intermediate") == batches
    assert not (out / "merged").exists() and not (out / "final").exists()
    # They are still there after a merge run alone; the X shapes are non-empty.
    assert run(MergeBatches(recipe=recipe))
    assert batch_files(out / "intermediate") == batches
    merged = json.loads((out / "merged" / "manifest.json").read_text())
    rows, columns = sum(count for _, count in merged["batches"]), merged["arrays"]["X"]["shape"]
    assert rows > 0 and columns == [422]
    # No file per input game: each game is a frame of its batch file.
    assert not (out / "files").exists()
    # A full run with cleanup leaves none, and its final/ is upstream's rows.
    assert run(BuildDataset(recipe=recipe, cleanup=True))
    assert not PIPELINE_FOLDERS & {path.name for path in out.iterdir()}
    assert check_final(out / "final") == rows
    # Without cleanup it keeps them.
    kept_recipe = str(sample_recipe(tmp_path / "kept", SAMPLE_GAMES))
    kept = tmp_path / "kept" / "out"
    assert run(BuildDataset(recipe=kept_recipe))
    assert PIPELINE_FOLDERS <= {path.name for path in kept.iterdir()} and batch_files(kept / "intermediate") == batches
    # preprocessing_stats.json has total_samples and input_dim; no NaN in any X.
    for final in (out / "final", kept / "final"):
        stats = json.loads((final / "preprocessing_stats.json").read_text())
        assert (stats["total_samples"], stats["input_dim"]) == (rows, 422)
        for split in SPLITS:
            assert not np.isnan(np.load(final / f"X_{split}.npy")).any(), (final, split)
    # A merge over batches in another folder (intermediate_dir) works; a cleanup there removes only the batches.
    scratch = tmp_path / "scratch"
    elsewhere = str(sample_recipe(tmp_path / "elsewhere", SAMPLE_GAMES, f'intermediate_dir = "{scratch}"'))
    assert run(BuildBatches(recipe=elsewhere))
    assert batch_files(scratch) == batches and not (tmp_path / "elsewhere" / "out" / "intermediate").exists()
    (scratch / "notes.txt").write_text("not the pipeline's")
    assert run(MergeBatches(recipe=elsewhere))
    assert run(SplitDataset(recipe=elsewhere, cleanup=True))
    final = tmp_path / "elsewhere" / "out" / "final"
    for split in SPLITS:
        np.testing.assert_array_equal(np.load(final / f"X_{split}.npy"), np.load(kept / "final" / f"X_{split}.npy"))
    assert batch_files(scratch) == [] and (scratch / "notes.txt").read_text() == "not the pipeline's"
    assert not (tmp_path / "elsewhere" / "out" / "merged").exists()
    # --help of the commands documents the cleanup and batch-only options.
    for task in ("SplitDataset", "BuildDataset"):
        assert "--cleanup" in help_text(task) and "delete the intermediates" in help_text(task), task
    assert "run BuildBatches" in help_text("BuildDataset")
    assert "BuildBatches is the batch-only run" in help_text("BuildBatches")
