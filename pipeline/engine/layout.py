"""Where every output lives below a dataset's output folder, and which folders the pipeline may own."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.engine.records import RECORDS, record_path
from pipeline.engine.storage import TEMP_MARK, write_json

if TYPE_CHECKING:
    from pipeline.recipe import Recipe

SPLITS = ("train", "val", "test")
OWNER_FILE = ".pipeline-output.json"
"""Marks a folder as a pipeline output folder; an existing non-empty folder without it is refused."""


def output_dir_problem(output_dir: Path, input_dir: Path) -> str | None:
    """Why ``output_dir`` cannot be the output folder of a dataset reading ``input_dir``, or None.

    Refused: the root folder, the home folder, the input folder, any folder containing it or
    inside it, and an existing non-empty folder that is not a pipeline output (no owner file).
    """
    output_dir, input_dir = output_dir.resolve(), input_dir.resolve()
    if output_dir == Path(output_dir.anchor):
        return "is the root folder"
    if output_dir == Path.home().resolve():
        return "is the home folder"
    if output_dir == input_dir:
        return "is the input folder"
    if output_dir in input_dir.parents:
        return f"contains the input folder {input_dir}"
    if input_dir in output_dir.parents:
        return f"is inside the input folder {input_dir}"
    if output_dir.is_dir() and not (output_dir / OWNER_FILE).is_file():
        try:
            with os.scandir(output_dir) as entries:  # an owner file's temp: a claim killed mid-write, ours
                if any(not entry.name.startswith(f".{OWNER_FILE}{TEMP_MARK}") for entry in entries):
                    return (f"is an existing folder with files that this pipeline did not write (no {OWNER_FILE}); "
                            "choose a new or empty folder")
        except OSError as exc:
            return f"cannot be read: {exc.strerror}"
    elif output_dir.exists() and not output_dir.is_dir():
        return "is a file, not a folder"
    return None


def intermediate_dir_problem(intermediate_dir: Path, output_dir: Path, input_dir: Path) -> str | None:
    """Why ``intermediate_dir`` cannot hold the batches of a dataset writing ``output_dir``, or None.

    Refused as an output folder is (root, home, the input folder, ...), and the output folder
    itself, any folder containing it and any folder inside it but ``<output_dir>/intermediate``
    (whose siblings ``files``, ``merged``, ``final`` the pipeline rewrites and removes).
    """
    intermediate_dir, output_dir = intermediate_dir.resolve(), output_dir.resolve()
    if intermediate_dir == output_dir / "intermediate":
        return None
    if intermediate_dir == output_dir:
        return "is the output folder"
    if intermediate_dir in output_dir.parents:
        return f"contains the output folder {output_dir}"
    if output_dir in intermediate_dir.parents:
        return f"is inside the output folder {output_dir}; leave intermediate_dir out to use {output_dir}/intermediate"
    return output_dir_problem(intermediate_dir, input_dir)


def claim(output_dir: Path, dataset: str) -> None:
    """Create ``output_dir`` if needed and mark it as this pipeline's (idempotent)."""
    owner = output_dir / OWNER_FILE
    if not owner.is_file():
        write_json(owner, {"owner": "luigi-dataset-pipeline", "dataset": dataset})


def owner_of(output_dir: Path) -> str | None:
    """The dataset name an output folder was claimed for, or None when it is not an output folder."""
    try:
        return json.loads((output_dir / OWNER_FILE).read_text()).get("dataset")
    except (OSError, ValueError, AttributeError):
        return None


@dataclass(frozen=True)
class Layout:
    """Output paths of one dataset, derived from its output folder (and a batch folder elsewhere, if any)."""

    root: Path
    intermediate_dir: Path | None = None
    """The recipe's ``intermediate_dir`` when the batches live outside the output folder."""

    @classmethod
    def of(cls, recipe: Recipe) -> Layout:
        return cls(recipe.output_dir, recipe.intermediate_dir)

    @property
    def records(self) -> Path:
        """Stage records (engine/records.py): what every stage wrote, with sizes and checksums."""
        return self.root / RECORDS

    def record(self, stage: str) -> Path:
        return record_path(self.root, stage)

    @property
    def files(self) -> Path:
        """Byte outputs of kinds whose product is a file per input (``command``), mirroring the input tree."""
        return self.root / "files"

    @property
    def intermediate(self) -> Path:
        """The batches: ``<root>/intermediate``, or the recipe's ``intermediate_dir``."""
        return self.intermediate_dir or self.root / "intermediate"

    @property
    def merged(self) -> Path:
        return self.root / "merged"

    @property
    def final(self) -> Path:
        return self.root / "final"

    def file_blob(self, relative: str, name: str) -> Path:
        """A byte output a kind made for one input file (e.g. a command's stdout)."""
        return self.files / f"{relative}.{name}"

    @property
    def stop(self) -> Path:
        """The stop markers of runs under on_error = "fail" (engine/batches.py)."""
        return self.root / "stop"

    def stop_marker(self, run_id: str) -> Path:
        """Holds the first failure of a run under on_error = "fail"; every worker of every host stops on it."""
        return self.stop / f"{run_id}.txt"

    def batch(self, index: int) -> Path:
        """The batch file: a frame per input file, then its index (engine/frames.py)."""
        return self.intermediate / f"batch_{index:04d}.frames"

    def batch_record(self, index: int) -> Path:
        """The batch's record: fingerprint, size, checksum and stats; written last."""
        return self.intermediate / f"batch_{index:04d}.json"

    @property
    def merged_manifest(self) -> Path:
        return self.merged / "manifest.json"

    @property
    def final_manifest(self) -> Path:
        return self.final / "manifest.json"

    @property
    def stats(self) -> Path:
        return self.final / "stats.json"

    @property
    def monitor(self) -> Path:
        """One run record per task: state, timing, progress, peak memory (see engine/progress.py)."""
        return self.root / "monitor"

    @property
    def report(self) -> Path:
        """The run report: report.md and its PNG plots."""
        return self.root / "report"

    def final_metadata(self, key: str) -> Path:
        """A kind's metadata in ``final/`` (e.g. ``feature_cols.json``)."""
        return self.final / f"{key}.json"
