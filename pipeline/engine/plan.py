"""The plan of a dataset run: discovered inputs, their batches and every stage's fingerprint.

A fingerprint says what made an output: the kind and its version, the settings that
affect the stage, each input file's size and mtime, and a hash of the source code the
stage runs (the kind's reader module, or its whole package, and the engine modules of the
stage). An output whose recorded fingerprint differs from the plan's is stale and is
rebuilt, so a changed reader or engine rebuilds what it affects without a version bump.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from pipeline.engine.discovery import InputFile, discover
from pipeline.engine.layout import Layout
from pipeline.engine.records import code_digest
from pipeline.engine.storage import digest, digest_text
from pipeline.recipe import Recipe

PROCESS_CODE = ("pipeline.engine.batches", "pipeline.engine.batch_file", "pipeline.engine.frames",
                "pipeline.engine.failures", "pipeline.kinds.base", "pipeline.kinds.text")
MERGE_CODE = ("pipeline.engine.merge", "pipeline.engine.storage")
SPLIT_CODE = ("pipeline.engine.split", "pipeline.engine.splitting", "pipeline.engine.provenance",
              "pipeline.engine.frames", "pipeline.engine.storage")
"""Engine modules whose code each stage's fingerprint includes."""
BATCH_FORMAT = 4
"""Version of the batch file and record; a batch of another version is rebuilt (3: frames, no per-file outputs;
4: the index holds binary tables)."""


@dataclass(frozen=True)
class Batch:
    """One Luigi task's worth of input files, with the fingerprint of all and, once asked for, of each."""

    index: int
    files: tuple[InputFile, ...]
    process_fingerprint: str
    fingerprint: str

    @functools.cached_property
    def file_fingerprints(self) -> tuple[str, ...]:
        """What made each file's frame: the processing fingerprint, the file's path, size and mtime."""
        return tuple(digest_text(f"{self.process_fingerprint}\0{f.relative}\0{f.size}\0{f.mtime_ns}")
                     for f in self.files)


@dataclass(frozen=True)
class Plan:
    """Everything a run derives from the recipe and the input tree, computed once."""

    recipe: Recipe
    layout: Layout
    batches: tuple[Batch, ...]
    merge_fingerprint: str
    split_fingerprint: str

    @property
    def run_id(self) -> str:
        """The run every host and process shares: what it builds (the split's fingerprint covers every batch)."""
        return self.split_fingerprint

    @property
    def file_count(self) -> int:
        return sum(len(batch.files) for batch in self.batches)


def make_plan(recipe: Recipe, files: list[InputFile]) -> Plan:
    """Batch ``files`` and fingerprint every stage of ``recipe``."""
    kind = recipe.kind
    reader = [kind.read] if kind.read else []
    process_fingerprint = digest([kind.name, kind.version, recipe.kind_settings,
                                  code_digest(*reader, *PROCESS_CODE)])
    size, codec = recipe.files_per_batch, recipe.tables["batch"]["compression"]
    batches = []
    for index, start in enumerate(range(0, len(files), size)):
        chunk = tuple(files[start:start + size])
        listing = "\0".join(f"{f.relative}\0{f.size}\0{f.mtime_ns}" for f in chunk)
        batches.append(Batch(index, chunk, process_fingerprint,
                             digest_text(f"{BATCH_FORMAT}\0{codec}\0{process_fingerprint}\0{listing}")))
    merge_fingerprint = digest([[batch.fingerprint for batch in batches], code_digest(*MERGE_CODE)])
    kind_reports = [f for f in (kind.normalize_columns, kind.final_files) if f]
    split_fingerprint = digest([merge_fingerprint, dict(recipe.split), code_digest(*kind_reports, *SPLIT_CODE)])
    return Plan(recipe, Layout.of(recipe), tuple(batches), merge_fingerprint, split_fingerprint)


@functools.lru_cache(maxsize=8)
def plan_for(recipe: Recipe) -> Plan:
    """The plan of ``recipe``, discovered once per process (a forked worker inherits it, a spawned one discovers
    the same plan again)."""
    return make_plan(recipe, discover(recipe.input_dir, recipe.pattern))


def forget_plans() -> None:
    """Drop cached plans so the next call re-reads the input tree (for long-lived processes)."""
    plan_for.cache_clear()
