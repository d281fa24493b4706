"""The merge decides the dataset from the batch records; it copies no rows.

What it decides goes into ``merged/manifest.json``: the arrays and their layout (the one
most files share, see ``batches.choose_layout``), the kind's metadata, each batch with
rows and its row count in row order, each file's rows (``file_rows``, for row
provenance) and the run's file and record counts with every failure. The split streams
rows from the batch files straight into ``final/``. The stage record
``records/merge.json``, written last, lists the manifest, the checksum of every batch the
merge read and the size and mtime of each batch record, so a batch rebuilt since makes the
merge stale (told by a ``stat`` of each record; their checksums compared when one changed).
"""

from __future__ import annotations

from pipeline.engine.batches import batch_records, batches_as_merged, record_identities, summarise
from pipeline.engine.explain import no_rows_message
from pipeline.engine.plan import Plan
from pipeline.engine.records import current_record, write_record
from pipeline.engine.storage import write_json
from pipeline.errors import PipelineError


class MergeError(PipelineError):
    """Batches that cannot be merged (corrupt, or rows of different shapes)."""


def merge_batches(plan: Plan) -> dict:
    """Check that the batches agree on one layout and write the manifest of the dataset; return it."""
    layout = plan.layout
    records = batch_records(plan)
    with_rows = [(batch, record) for batch, record in zip(plan.batches, records, strict=True) if record["rows"]]
    if not with_rows:
        raise MergeError(no_rows_message(plan, records))
    spec, metadata = with_rows[0][1]["arrays"], with_rows[0][1].get("metadata", {})
    for batch, record in with_rows:
        if record["arrays"] != spec or record.get("metadata", {}) != metadata:
            raise MergeError(f"batch {batch.index} has another row layout than batch {with_rows[0][0].index} "
                             "although both were built with the dataset's; run MergeBatches again to rebuild it")
    manifest = {"fingerprint": plan.merge_fingerprint, "arrays": spec, "metadata": metadata,
                "batches": [[batch.index, record["rows"]] for batch, record in with_rows],
                "file_rows": [entry for _, record in with_rows for entry in record["file_rows"]],
                **summarise(plan, records)}
    write_json(layout.merged_manifest, manifest)
    write_record(layout.root, MERGE, plan.merge_fingerprint, [layout.merged_manifest],
                 {"batches": [record["checksum"] for record in records],
                  "records": record_identities(plan, records)})
    return manifest


MERGE = "merge"
"""Stage name of the merge (its record is ``records/merge.json``)."""


def merge_is_complete(plan: Plan) -> bool:
    """The merge record matches the plan, merged the batches as they are now, and its files are intact.

    Cheap: one ``stat`` per batch record. A batch rebuilt since (a file tried again) makes it stale.
    """
    record = current_record(plan.layout.root, MERGE, plan.merge_fingerprint)
    return record is not None and batches_as_merged(plan, record.facts)
