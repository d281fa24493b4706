"""The plain multiprocessing baseline: the same per-file function and the same final arrays, no Luigi.

``python benchmarks/baseline.py RECIPE --workers N --out DIR``

What it does, so that the comparison with the pipeline is fair: discover the inputs the
same way (sorted), run ``pipeline.engine.batches.process_file`` on every file in a
``multiprocessing.Pool`` (results in file order), concatenate the rows in memory, assign
train/val/test with the same group hash, and write the same final arrays to disk
(``X_<split>.npy``, ``groups_<split>.npy``, ``labels_<split>.npz``, ``masks_<split>.npz``).
What it does not do (the pipeline's extra work): batch files (a frame per input file) for
resuming, fingerprints, atomic renames, checksums, failure statistics, bounded memory
(it holds the whole dataset in memory twice), progress reporting.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from pathlib import Path

import numpy as np

from pipeline.engine.batches import process_file
from pipeline.engine.discovery import discover
from pipeline.engine.layout import SPLITS
from pipeline.engine.provenance import SOURCE_PREFIX
from pipeline.engine.split import MASK_PREFIX
from pipeline.engine.splitting import assign_splits
from pipeline.recipe import Recipe, load_recipe

_recipe: Recipe | None = None


def _init(path: str) -> None:
    global _recipe
    _recipe = load_recipe(path)


def _one(relative: str) -> dict[str, np.ndarray]:
    result, _failures, _keep = process_file(_recipe.kind, _recipe.kind_settings, _recipe.input_dir / relative, relative)
    return result.arrays


def run(recipe_path: str, workers: int, out: Path) -> int:
    """Process every input of the recipe and write the final splits to ``out``; return the row count."""
    recipe = load_recipe(recipe_path)
    relatives = [f.relative for f in discover(recipe.input_dir, recipe.pattern)]
    chunksize = max(1, len(relatives) // (workers * 32))
    columns: dict[str, list[np.ndarray]] = {}
    with multiprocessing.Pool(workers, _init, (recipe_path,)) as pool:
        for arrays in pool.imap(_one, relatives, chunksize):
            for name, array in arrays.items():
                columns.setdefault(name, []).append(array)
    data = {name: np.concatenate(parts) for name, parts in columns.items()}
    where = assign_splits(data["group"], recipe.split)
    labels = [n for n in data if n not in ("X", "group") and not n.startswith((MASK_PREFIX, SOURCE_PREFIX))]
    masks = [n for n in data if n.startswith(MASK_PREFIX)]
    out.mkdir(parents=True, exist_ok=True)
    for index, split in enumerate(SPLITS):
        rows = where == index
        np.save(out / f"X_{split}.npy", data["X"][rows])
        np.save(out / f"groups_{split}.npy", data["group"][rows])
        if labels:
            np.savez(out / f"labels_{split}.npz", **{n: data[n][rows] for n in labels})
        if masks:
            np.savez(out / f"masks_{split}.npz", **{n.removeprefix(MASK_PREFIX): data[n][rows] for n in masks})
    return len(data["X"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="folder of the final arrays")
    args = parser.parse_args()
    rows = run(args.recipe, args.workers, args.out)
    print(f"{rows} rows written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
