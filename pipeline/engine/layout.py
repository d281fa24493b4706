"""Where every output lives below a dataset's output folder: one place builds all paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Layout:
    """Output paths of one dataset, derived from its output folder only."""

    root: Path

    @property
    def files(self) -> Path:
        """Per-input-file outputs, mirroring the input tree."""
        return self.root / "files"

    @property
    def intermediate(self) -> Path:
        return self.root / "intermediate"

    @property
    def merged(self) -> Path:
        return self.root / "merged"

    @property
    def final(self) -> Path:
        return self.root / "final"

    def file_output(self, relative: str) -> Path:
        return self.files / f"{relative}.npz"

    def file_blob(self, relative: str, name: str) -> Path:
        """A byte output a kind made for one input file (e.g. a command's stdout)."""
        return self.files / f"{relative}.{name}"

    def stop_marker(self, run_id: str) -> Path:
        """Holds the first failure of a run under on_error = "fail"; every worker stops on it."""
        return self.root / "stop" / f"{run_id}.txt"

    def batch(self, index: int) -> Path:
        return self.intermediate / f"batch_{index:04d}.npz"

    def batch_record(self, index: int) -> Path:
        """The batch's record: fingerprint, size, checksum and stats; written last."""
        return self.intermediate / f"batch_{index:04d}.json"

    @property
    def merged_manifest(self) -> Path:
        return self.merged / "manifest.json"

    def merged_array(self, name: str) -> Path:
        return self.merged / f"{name}.npy"

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
