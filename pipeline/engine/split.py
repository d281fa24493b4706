"""Final splits by group: a hash of the group id decides train/val/test, streamed from the batches.

A group's split depends only on its id and the seed, so no group straddles splits and
a group keeps its split when more data arrives. Rows go from the batch files (each
verified against its record first) straight into ``final/``: no merged copy. Rows per
split and the train statistics of the optional standardisation (which leaves binary
columns alone) come from the batch records, taken when each batch was written; a batch
recorded under other split settings is read once more for them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from pipeline.engine import frames
from pipeline.engine.batches import batch_facts, batches_as_merged, split_statistics, verify_batch
from pipeline.engine.explain import check_splits
from pipeline.engine.layout import SPLITS
from pipeline.engine.merge import MERGE
from pipeline.engine.plan import Plan
from pipeline.engine.provenance import SOURCE_PREFIX, write_provenance
from pipeline.engine.records import current_record, output_entry, read_record, remove_outputs, write_record
from pipeline.engine.splitting import RunningMoments, assign_splits, split_key
from pipeline.engine.storage import (
    ArrayWriter,
    ChecksumWriter,
    NpzWriter,
    atomic_open,
    iter_npy,
    read_json,
    write_json,
)
from pipeline.errors import PipelineError

MASK_PREFIX = "mask_"
SPLIT_ROW_BYTES = 64
"""Memory per row that assigning splits takes beside the rows: the uint64 group id and the
hash's uint64/float64 temporaries (measured peak ~40 bytes)."""


def _with_rows(plan: Plan, manifest: dict) -> list[int]:
    """Indexes of the batches with rows, in row order (the merge's list)."""
    return [index for index, _ in manifest["batches"]]


def dataset_rows(plan: Plan, manifest: dict, name: str, size: int) -> Iterator[np.ndarray]:
    """Chunks of array ``name`` over the whole dataset in row order, read from the batch files."""
    for index in _with_rows(plan, manifest):
        path = plan.layout.batch(index)
        yield from frames.iter_array(path, frames.read_index(path), name, size)


def _with_splits(plan: Plan, manifest: dict, name: str, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Chunks of array ``name`` with the split index of each row."""
    chunks = zip(dataset_rows(plan, manifest, name, size), dataset_rows(plan, manifest, "group", size), strict=True)
    for chunk, groups in chunks:
        yield chunk, assign_splits(groups, plan.recipe.split)


def _batch_statistics(plan: Plan, manifest: dict) -> list[dict]:
    """Each batch's rows per split and train moments, from its record or (other settings) read again."""
    settings, normalize = split_key(plan.recipe.split), plan.recipe.split["normalize"]
    result = []
    for index in _with_rows(plan, manifest):
        facts = batch_facts(plan, index).get("split") or {}
        if facts.get("settings") != settings or (normalize and not facts.get("train")):
            facts = split_statistics(plan, plan.layout.batch(index))
        result.append(facts)
    return result


def fit_normalization(plan: Plan, manifest: dict, statistics: list[dict]) -> dict[str, list]:
    """Mean, std and which columns to standardise, from the train rows of ``X`` only (the batches' moments)."""
    moments = RunningMoments(int(np.prod(manifest["arrays"]["X"]["shape"], dtype=np.int64)))
    for facts in statistics:
        moments.combine(RunningMoments.from_json(facts["train"]))
    result = moments.result()
    choose = plan.recipe.kind.normalize_columns
    if choose is not None:  # the kind's choice by name; scale 1 where the train std is 0
        chosen = np.zeros(len(result["std"]), dtype=bool)
        chosen[list(choose(plan.recipe.kind_settings, manifest["metadata"]))] = True
        result["normalize"] = chosen.tolist()
        result["std"] = [s if s > 0 else 1.0 for s in result["std"]]
    return result


def standardiser(normalization: dict[str, list]) -> Callable[[np.ndarray], np.ndarray]:
    """A function applying ``(x - mean) / std`` to the columns marked for it, as float32."""
    chosen = np.array(normalization["normalize"], dtype=bool)
    mean = np.where(chosen, normalization["mean"], 0.0)
    scale = np.where(chosen, normalization["std"], 1.0)

    def apply(chunk: np.ndarray) -> np.ndarray:
        return ((chunk.reshape(len(chunk), -1) - mean) / scale).astype(np.float32).reshape(chunk.shape)

    return apply


SPLIT = "split"
"""Stage name of the split (its record is ``records/split.json``)."""


class DamagedBatchError(PipelineError):
    """Batch files that fail their checksums: they are rebuilt, never split."""

    def __init__(self, message: str, batches: list[int]):
        super().__init__(message)
        self.batches = batches


def split_dataset(plan: Plan, chunk_bytes: int, progress: Callable[[int, int], None] | None = None,
                  warn: Callable[[str], None] = lambda message: None) -> dict:
    """Write ``final/``: X, labels, masks, groups and row provenance per split, stats, metadata, the manifest.

    Every batch file is verified against its record first (:class:`DamagedBatchError`), so
    corrupt rows never reach ``final/``. Files of an earlier split that this one does not
    write again are removed, and only those: the earlier split record lists them.
    """
    layout = plan.layout
    manifest = read_json(layout.merged_manifest)
    with_rows = set(_with_rows(plan, manifest))
    problems = {batch.index: problem for batch in plan.batches if batch.index in with_rows
                for problem in [verify_batch(plan, batch)] if problem}
    if problems:
        raise DamagedBatchError(f"batches are damaged: {'; '.join(problems.values())}", sorted(problems))
    earlier = read_record(layout.root, SPLIT)
    names = sorted(manifest["arrays"])
    labels = [n for n in names if n not in ("X", "group") and not n.startswith((MASK_PREFIX, SOURCE_PREFIX))]
    masks = [n for n in names if n.startswith(MASK_PREFIX)]
    sizes = {name: _chunk(manifest, name, chunk_bytes) for name in names}
    statistics = _batch_statistics(plan, manifest)
    counts = np.sum([facts["rows"] for facts in statistics], axis=0, dtype=np.int64)
    check_splits(plan, {split: int(counts[i]) for i, split in enumerate(SPLITS)}, warn)  # before writing

    written = []
    transform = None
    if plan.recipe.split["normalize"]:
        normalization = fit_normalization(plan, manifest, statistics)
        columns = manifest.get("metadata", {}).get("feature_cols")
        write_json(layout.final / "normalization.json",
                   {"fitted_on": "train", **normalization, **({"columns": columns} if columns else {})})
        written.append("normalization.json")
        transform = standardiser(normalization)
    outputs = [("X", ".npy", ["X"]), ("groups", ".npy", ["group"])]
    outputs += [("labels", ".npz", labels)] if labels else []
    outputs += [("masks", ".npz", masks)] if masks else []
    checksums = {}  # of the .npy files, taken as they are written (zip archives seek back: read again)
    for step, (stem, suffix, members) in enumerate(outputs, start=1):
        paths = [layout.final / f"{stem}_{split}{suffix}" for split in SPLITS]
        with contextlib.ExitStack() as stack:
            handles = [stack.enter_context(atomic_open(path)) for path in paths]
            if suffix == ".npy":
                handles = [ChecksumWriter(handle) for handle in handles]
            archives = [stack.enter_context(NpzWriter(h)) for h in handles] if suffix == ".npz" else None
            for name in members:
                _route(plan, manifest, name, sizes[name], counts, handles, archives,
                       transform if name == "X" else None)
            if suffix == ".npy":
                checksums.update({path: handle.checksum for path, handle in zip(paths, handles, strict=True)})
        written += [path.name for path in paths]
        if progress:
            progress(step, len(outputs))
    sources = [name for name in names if name.startswith(SOURCE_PREFIX)]
    written += write_provenance(layout, manifest, lambda groups: assign_splits(groups, plan.recipe.split),
                                lambda name, size: dataset_rows(plan, manifest, name, size),
                                min(sizes[name] for name in ("group", *sources)))

    stats = {
        "dataset": plan.recipe.name,
        "kind": plan.recipe.kind.name,
        "files": manifest["files"],
        "records": manifest["records"],
        "rows": {"total": int(counts.sum()), **{s: int(counts[i]) for i, s in enumerate(SPLITS)}},
        "groups": {split: _distinct(layout.final / f"groups_{split}.npy", sizes["group"]) for split in SPLITS},
        "failures": manifest["failures"],
        "warnings": manifest["warnings"],
        "processing": manifest["processing"],
    }
    write_json(layout.stats, stats)
    written.append(layout.stats.name)
    metadata = manifest.get("metadata", {})
    for key, value in sorted(metadata.items()):
        write_json(layout.final_metadata(key), value)
        written.append(layout.final_metadata(key).name)
    if plan.recipe.kind.final_files:  # the kind's own reports on final/
        for name, value in sorted(plan.recipe.kind.final_files(layout.final, stats).items()):
            write_json(layout.final / name, value)
            written.append(name)
    paths = [layout.final / name for name in written]
    if earlier:  # outputs of an earlier run with other settings or metadata, and nothing else
        keep = {str(path.relative_to(layout.root)) for path in [*paths, layout.final_manifest]}
        remove_outputs(layout.root, [name for name in earlier.outputs if name not in keep])
    outputs = {str(path.relative_to(layout.root)): output_entry(path, checksums.get(path)) for path in paths}
    write_json(layout.final_manifest, {"fingerprint": plan.split_fingerprint, "files": {
        Path(name).name: {"size": o.size, "checksum": o.checksum} for name, o in outputs.items()}})
    outputs[str(layout.final_manifest.relative_to(layout.root))] = output_entry(layout.final_manifest)
    merged = read_record(layout.root, MERGE).outputs[str(layout.merged_manifest.relative_to(layout.root))]
    write_record(layout.root, SPLIT, plan.split_fingerprint, outputs, {"merge": merged.checksum})
    return stats


def _chunk(manifest: dict, name: str, chunk_bytes: int) -> int:
    """Rows per chunk of array ``name`` so that a chunk stays within ``chunk_bytes``.

    Each chunk also streams its rows' group ids and hashes them (:data:`SPLIT_ROW_BYTES`),
    which for a narrow array (an int16 label) costs far more than the rows themselves.
    """
    info = manifest["arrays"][name]
    row_bytes = np.dtype(info["dtype"]).itemsize * int(np.prod(info["shape"], dtype=np.int64))
    return max(1, chunk_bytes // (row_bytes + SPLIT_ROW_BYTES))


def _route(plan: Plan, manifest: dict, name: str, size: int, counts: np.ndarray, handles: list,
           archives: list | None, transform: Callable[[np.ndarray], np.ndarray] | None) -> None:
    """Stream array ``name`` from the batches into one writer per split: an .npy file, or an .npz member."""
    info = manifest["arrays"][name]
    shape = (0, *info["shape"])
    dtype = np.dtype(np.float32) if transform else np.dtype(info["dtype"])
    with contextlib.ExitStack() as stack:
        if archives is None:
            writers = [ArrayWriter(h, dtype, shape[1:], int(n)) for h, n in zip(handles, counts, strict=True)]
        else:
            key = name.removeprefix(MASK_PREFIX)
            writers = [stack.enter_context(a.member(key, dtype, shape[1:], int(n)))
                       for a, n in zip(archives, counts, strict=True)]
        for chunk, where in _with_splits(plan, manifest, name, size):
            chunk = transform(chunk) if transform else chunk
            for index, writer in enumerate(writers):
                writer.append(chunk[where == index])
        for writer in writers:
            writer.close()


def _distinct(path, size: int) -> int:
    """Number of distinct group ids in a .npy of group ids."""
    chunks = [np.unique(chunk) for chunk in iter_npy(path, size)]
    return int(np.unique(np.concatenate(chunks)).size) if chunks else 0


def split_is_complete(plan: Plan) -> bool:
    """The split record matches the plan, every final file is intact, and it split the merge as it is.

    Cheap (records and ``stat``s). Once Cleanup removed the merge, ``final/`` is all there is;
    while the merge is there, a merge redone since, or a batch with files to try again,
    makes the split stale.
    """
    root = plan.layout.root
    record = current_record(root, SPLIT, plan.split_fingerprint)
    if record is None:
        return False
    merge = read_record(root, MERGE)
    if merge is None:
        return True
    manifest = merge.outputs.get(str(plan.layout.merged_manifest.relative_to(root)))
    return (manifest is not None and manifest.checksum == record.facts.get("merge")
            and batches_as_merged(plan, merge.facts))
