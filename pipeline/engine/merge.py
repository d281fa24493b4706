"""Merging batch files into one .npy per array, streamed chunk by chunk.

Memory holds one chunk at a time, never a whole batch or the whole dataset. The
manifest (``merged/manifest.json``) records the arrays, the kind's metadata, each file's
rows in row order (``file_rows``, for row provenance) and the run's file and record counts
with every failure; the stage record ``records/merge.json``, written last, lists every
merged file with its size and checksum (engine/records.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline.engine.batches import batch_checksums, batch_records, summarise
from pipeline.engine.explain import no_rows_message
from pipeline.engine.plan import Plan
from pipeline.engine.records import current_record, damaged, read_record, write_record
from pipeline.engine.storage import iter_npz_member, write_json, write_npy
from pipeline.errors import PipelineError


class MergeError(PipelineError):
    """Batches that cannot be merged (corrupt, or rows of different shapes)."""


def chunk_rows(row_shape: tuple[int, ...], dtype: np.dtype, chunk_bytes: int) -> int:
    """Rows per chunk so that one chunk stays within ``chunk_bytes``."""
    row_bytes = np.dtype(dtype).itemsize * int(np.prod(row_shape, dtype=np.int64))
    return max(1, chunk_bytes // max(1, row_bytes))


def merge_batches(plan: Plan, chunk_bytes: int, progress: Callable[[int, int], None] | None = None) -> dict:
    """Stream every batch into ``merged/<name>.npy``; write and return the manifest."""
    layout = plan.layout
    records = batch_records(plan)
    with_rows = [(batch, record) for batch, record in zip(plan.batches, records, strict=True) if record["rows"]]
    if not with_rows:
        raise MergeError(no_rows_message(plan, records))
    spec, metadata = with_rows[0][1]["arrays"], with_rows[0][1].get("metadata", {})
    for batch, record in with_rows:
        if record["arrays"] != spec:
            raise MergeError(f"batch {batch.index} has arrays {record['arrays']}, batch "
                             f"{with_rows[0][0].index} has {spec}: the kind gave rows of different shapes")
        if record.get("metadata", {}) != metadata:
            raise MergeError(f"batch {batch.index} has other metadata than batch {with_rows[0][0].index} "
                             f"(keys {sorted(record.get('metadata', {}))}): its files have other columns")
    rows = sum(record["rows"] for _, record in with_rows)
    for step, (name, info) in enumerate(sorted(spec.items()), start=1):
        dtype, row_shape = np.dtype(info["dtype"]), tuple(info["shape"])
        size = chunk_rows(row_shape, dtype, chunk_bytes)

        def chunks(name=name, size=size):
            for batch, _ in with_rows:
                path = layout.batch(batch.index)
                try:
                    yield from iter_npz_member(path, name, size)
                except Exception as exc:  # noqa: BLE001 - any read error means a corrupt batch
                    layout.batch_record(batch.index).unlink(missing_ok=True)
                    raise MergeError(f"{path} is corrupt ({type(exc).__name__}: {exc}); its record was "
                                     "removed so the next run rebuilds this batch alone") from None

        write_npy(layout.merged_array(name), chunks(), dtype, row_shape, rows)
        if progress:
            progress(step, len(spec))
    manifest = {"fingerprint": plan.merge_fingerprint, "arrays": spec, "metadata": metadata,
                "file_rows": [entry for _, record in with_rows for entry in record["file_rows"]],
                **summarise(plan, records)}
    write_json(layout.merged_manifest, manifest)
    write_record(layout.root, MERGE, plan.merge_fingerprint,
                 [layout.merged_manifest, *(layout.merged_array(name) for name in sorted(spec))],
                 {"batches": [record["checksum"] for record in records]})
    return manifest


MERGE = "merge"
"""Stage name of the merge (its record is ``records/merge.json``)."""


def merge_is_complete(plan: Plan) -> bool:
    """The merge record matches the plan, merged the batches as they are now, and its files are intact.

    Cheap: one JSON read per batch. A batch rebuilt since (a file tried again) makes it stale.
    """
    record = current_record(plan.layout.root, MERGE, plan.merge_fingerprint)
    return record is not None and record.facts.get("batches") == batch_checksums(plan)


def merge_damage(plan: Plan) -> list[str]:
    """Merged files whose checksum differs from the merge record (reads them all); [] when intact."""
    record = read_record(plan.layout.root, MERGE)
    return damaged(plan.layout.root, record) if record else ["records/merge.json: missing"]
