"""Merging batch files into one .npy per array, streamed chunk by chunk.

Memory holds one chunk at a time, never a whole batch or the whole dataset. The
manifest (``merged/manifest.json``) is written last: it records the fingerprint, the
arrays, the kind's metadata and the run's file and record counts with every failure.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline.engine.batches import batch_records, summarise
from pipeline.engine.explain import no_rows_message
from pipeline.engine.plan import Plan
from pipeline.engine.storage import iter_npz_member, read_json, write_json, write_npy
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
                **summarise(plan, records)}
    write_json(layout.merged_manifest, manifest)
    return manifest


def merge_is_complete(plan: Plan) -> bool:
    """The manifest matches the plan and every merged array is present."""
    manifest = read_json(plan.layout.merged_manifest)
    if not manifest or manifest.get("fingerprint") != plan.merge_fingerprint:
        return False
    return all(plan.layout.merged_array(name).is_file() for name in manifest["arrays"])
