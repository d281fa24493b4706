"""Processing one batch of input files into one batch file, resumable file by file.

Each input file's rows, fingerprint and failure records are one frame appended to the
batch file (``intermediate/batch_NNNN.frames``, see :mod:`pipeline.engine.frames`) as
soon as the file is processed, so an interrupted batch resumes file by file and no file
per input is written. Its record (``batch_NNNN.json``: fingerprint, size, checksum,
counts, each file's rows, failures, split statistics) is written last and is what marks
the batch complete.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.engine import frames
from pipeline.engine.batch_file import BatchFile, writer_lock
from pipeline.engine.discovery import InputFile, refusal
from pipeline.engine.failures import BAD_INPUT, InputError, describe, failure, failure_limit, run_token, stop_the_run
from pipeline.engine.plan import Batch, Plan
from pipeline.engine.provenance import file_rows
from pipeline.engine.records import StageRecord, damaged, intact, output_entry, remove_outputs
from pipeline.engine.splitting import SplitTally
from pipeline.engine.storage import StorageError, atomic_open, digest, read_json, write_json
from pipeline.kinds.base import FileResult, Kind, as_file_result, group_id

logger = logging.getLogger("luigi-interface")
Progress = Callable[..., None]
"""``progress(files done, files in all, failures, records=records read so far)``."""


def process_file(kind: Kind, settings: dict, path: Path, relative: str) -> tuple[FileResult, list[dict], bool]:
    """Run the kind on one file: its result, failure records, and whether to keep the output.

    Any exception is a failure of the whole file, never a crash of the run. Only bad input
    (:data:`BAD_INPUT`) is kept as the file's result. An OSError (permission denied, file
    gone) or any other exception (a bug in the kind: TypeError, KeyError, ...) is not: the
    failure says which, and the next run tries the file again.
    """
    try:
        result = as_file_result(kind.read(path, settings))
    except Exception as exc:  # noqa: BLE001 - a bad file is recorded, never a crash
        message = str(exc).replace(str(path), relative) or type(exc).__name__
        record = failure(relative, None, type(exc).__name__, message)
        if not isinstance(exc, BAD_INPUT):
            record["retry"] = "os error" if isinstance(exc, OSError) else "code error"
        return FileResult({}, 0), [record], "retry" not in record
    arrays = result.arrays
    if arrays and "group" not in arrays:
        arrays["group"] = np.full(len(arrays["X"]), group_id(relative), dtype=np.uint64)
    failures = [failure(relative, e.line, e.error, e.message) for e in result.errors if not e.warning]
    return result, failures, True


def make_file(plan: Plan, file: InputFile, fingerprint: str) -> tuple[dict, dict, bool]:
    """Process one input file: its arrays, its frame's meta, and whether to keep it (False: try again next run).

    Its blobs (byte outputs, e.g. a command's stdout) are written under ``files/`` first:
    the frame appended after them is their commit record.
    """
    recipe = plan.recipe
    refused = refusal(file, recipe.kind)
    if refused:  # never opened (a FIFO blocks, /dev/zero never ends) nor kept: the next run looks again
        result, failures, keep = FileResult({}, 0), [failure(file.relative, None, *refused)], False
    else:
        result, failures, keep = process_file(
            recipe.kind, recipe.kind_settings, recipe.input_dir / file.relative, file.relative)
    arrays = result.arrays
    meta = {"fingerprint": fingerprint, "file": file.relative, "records": result.records,
            "rows": len(arrays["X"]) if arrays else 0, "failed": bool(failures) and not result.records,
            "failures": failures, "warnings": [failure(file.relative, e.line, e.error, e.message)
                                               for e in result.errors if e.warning],
            "blobs": {name: len(blob) for name, blob in result.blobs.items()},
            "metadata": result.metadata}
    if keep:
        for name, blob in result.blobs.items():
            with atomic_open(plan.layout.file_blob(file.relative, name)) as handle:
                handle.write(blob)
    return arrays, meta, keep


def _mismatch(relative: str, file_spec: dict, spec: dict) -> dict[str, Any]:
    """The failure of a file whose rows or metadata differ from the dataset's layout."""
    if file_spec["arrays"] != spec["arrays"]:
        return failure(relative, None, "RowShapeMismatch",
                       f"rows {file_spec['arrays']} differ from the dataset's {spec['arrays']}")
    keys = sorted(k for k in {**spec["metadata"], **file_spec["metadata"]}
                  if spec["metadata"].get(k) != file_spec["metadata"].get(k))
    return failure(relative, None, "MetadataMismatch",
                   f"metadata {', '.join(keys)} differs from the dataset's (e.g. other columns in the header)")


def choose_layout(layouts: list[dict[str, Any]]) -> str | None:
    """The layout a dataset's rows take: the one most files have, then most rows, then the lowest digest.

    ``layouts`` are a batch record's ``layouts`` entries (``digest``, ``files``, ``rows``),
    of one batch or of all: the choice depends on the files only, never on which file sorts
    first or how the files are batched.
    """
    totals: dict[str, list[int]] = {}
    for entry in layouts:
        total = totals.setdefault(entry["digest"], [0, 0])
        total[0] += entry["files"]
        total[1] += entry["rows"]
    return min(totals, key=lambda d: (-totals[d][0], -totals[d][1], d)) if totals else None


def build_batch(plan: Plan, batch: Batch, progress: Progress | None = None,
                dataset_layout: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the batch file of ``batch``, a frame per input file (kept from earlier runs when current); its record.

    The batch takes the row layout (arrays and metadata) of ``dataset_layout`` (a ``layouts``
    entry: the dataset's, see :func:`choose_layout`), or else its own files' choice; a file
    of another layout is that file's failure (its frame stays, out of the index). The
    record's ``layouts`` count the files and rows of each layout so that the merge can
    choose the dataset's.

    Memory holds one file's rows at a time. Under ``on_error = "fail"`` the first failure
    anywhere in the run stops every batch before its next file (a marker file shared by all
    workers of all hosts); the error names it.
    """
    layout = plan.layout
    with writer_lock(layout.batch(batch.index)) as waited:
        if waited and batch_is_complete(plan, batch):  # built meanwhile by another run
            return batch_facts(plan, batch.index)
        try:
            output = BatchFile(plan, batch)
        except OSError as exc:
            raise StorageError(f"writing {layout.batch(batch.index)} failed: {exc.strerror or exc}") from exc
        return _write_batch(plan, batch, output, progress, dataset_layout)


def _write_batch(plan: Plan, batch: Batch, output: BatchFile, progress: Progress | None,
                 dataset_layout: dict[str, Any] | None) -> dict[str, Any]:
    """:func:`build_batch` once its batch file is open."""
    layout, recipe = plan.layout, plan.recipe
    stop = layout.stop_marker(plan.run_id)
    limit = failure_limit(recipe.max_failures, plan.file_count)
    codec = recipe.tables["batch"]["compression"]
    tallied = ["X", "group"] if recipe.split["normalize"] else ["group"]
    metas, placed, specs, tallies, failures = [], [], {}, {}, []
    failed_files = records = 0
    started = time.monotonic()
    try:
        for done, (file, fingerprint) in enumerate(zip(batch.files, batch.file_fingerprints, strict=True), start=1):
            if recipe.on_error == "fail" and stop.exists():
                raise InputError(f"stopped: {stop.read_text()}")
            frame = output.kept.get(fingerprint)
            if frame is None:
                arrays, meta, keep = make_file(plan, file, fingerprint)
                frame = output.append(meta, arrays, codec) if keep else None
                meta = {**(frame.meta if frame else meta), "reused": False}
            else:
                meta = {**frame.meta, "reused": True}
                arrays = frames.frame_arrays(output.handle, frame, tallied) if meta["rows"] else {}
            if meta["rows"]:
                file_spec = {"arrays": {name: entry[2:4] for name, entry in sorted(meta["arrays"].items())},
                             "metadata": meta.get("metadata", {})}
                meta["layout"] = digest(file_spec)
                specs.setdefault(meta["layout"], file_spec)
                tally = tallies.setdefault(meta["layout"], SplitTally(recipe.split, _columns(meta)))
                tally.add(arrays["X"] if "X" in tallied else None, arrays["group"])
            failures.extend(meta["failures"])
            metas.append(meta)
            placed.append(frame)
            for retried in (f for f in meta["failures"] if f.get("retry") == "code error"):
                logger.warning("%s: a code error, not bad input (%s: %s); the file is tried again on the next run",
                               retried["file"], retried["error"], retried["message"])
            if failures and recipe.on_error == "fail":
                raise InputError(stop_the_run(plan, failures[0]))
            failed_files += meta["failed"]
            records += meta["records"]
            if failed_files > limit:
                raise InputError(f"{failed_files} files failed in batch {batch.index}, more than max_failures "
                                 f"allows ({limit} of {plan.file_count}); last: {describe(failures[-1])}")
            if progress:
                progress(done, len(batch.files), len(failures), records=records)
        layouts = [{"digest": key, "spec": spec, "files": sum(m.get("layout") == key for m in metas),
                    "rows": sum(m["rows"] for m in metas if m.get("layout") == key)}
                   for key, spec in sorted(specs.items())]
        layout_key = dataset_layout["digest"] if dataset_layout else choose_layout(layouts)
        spec = dataset_layout["spec"] if dataset_layout else specs.get(layout_key)
        for index, meta in enumerate(metas):
            if meta.get("layout") not in (None, layout_key):
                mismatch = _mismatch(meta["file"], specs[meta["layout"]], spec)
                metas[index] = {**meta, "rows": 0, "failed": True, "failures": [*meta["failures"], mismatch]}
                failures.append(mismatch)
        arrays_spec = {name: {"dtype": dtype, "shape": list(shape)}
                       for name, (dtype, shape) in (spec["arrays"] if spec else {}).items()}
        entries = [{"file": meta["file"], "rows": meta["rows"], "segments": frames.segments(frame)}
                   for meta, frame in zip(metas, placed, strict=True) if meta["rows"]]
        path = output.finish(arrays_spec, entries)
    except OSError as exc:
        raise StorageError(f"writing {output.path} failed: {exc.strerror or exc}") from exc
    finally:
        output.close()
    rows = sum(meta["rows"] for meta in metas)
    facts = {
        "split": tallies[layout_key].to_json() if rows else None,
        "rows": rows,
        "arrays": arrays_spec,
        "metadata": spec["metadata"] if spec else {},
        "layout": layout_key if spec else None,
        "layouts": layouts,
        "files": len(metas),
        "file_rows": file_rows([file.relative for file in batch.files], [meta["rows"] for meta in metas]),
        "files_failed": sum(meta["failed"] for meta in metas),
        "files_reused": sum(meta["reused"] for meta in metas),
        "records": sum(meta["records"] for meta in metas),
        "records_failed": sum(1 for f in failures if f["line"] is not None),
        "seconds": round(time.monotonic() - started, 3),
        "failures": failures,
        "warnings": [w for meta in metas for w in meta.get("warnings", [])],
        "retry": [m["file"] for m in metas if any("retry" in f for f in m["failures"])],
        "run": run_token(),
    }
    stage = StageRecord(f"batches/{batch.index:04d}", batch.fingerprint, {path.name: output_entry(path)}, facts)
    earlier = read_batch_record(plan, batch.index)
    write_json(layout.batch_record(batch.index), stage.to_json())
    if earlier:  # what an earlier version wrote under another name (batch_NNNN.npz), and only that
        remove_outputs(layout.intermediate, [name for name in earlier.outputs if name != path.name])
    return batch_view(stage)


def batch_view(record: StageRecord) -> dict[str, Any]:
    """A batch's stage record as one mapping: its facts, fingerprint, and its batch file's size and checksum."""
    (output,) = record.outputs.values()
    return {**record.facts, "fingerprint": record.fingerprint, "size": output.size, "checksum": output.checksum}


def read_batch_record(plan: Plan, index: int) -> StageRecord | None:
    """The stage record of batch ``index`` (``batch_NNNN.json`` beside its batch file), or None."""
    data = read_json(plan.layout.batch_record(index))
    try:
        return StageRecord.from_json(data) if data else None
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def batch_facts(plan: Plan, index: int) -> dict[str, Any]:
    """:func:`batch_view` of batch ``index``'s record, or {} when there is none."""
    record = read_batch_record(plan, index)
    return batch_view(record) if record else {}


def split_statistics(plan: Plan, path: Path) -> dict[str, Any]:
    """Rows per split of a batch file and, when the recipe standardises, the moments of its train X.

    A batch records them as it is written (:class:`SplitTally`, file by file); this reads a
    batch again for split settings other than those it recorded, in the same order.
    """
    index = frames.read_index(path)
    normalize = plan.recipe.split["normalize"]
    tally = SplitTally(plan.recipe.split, int(np.prod(index["spec"]["X"]["shape"], dtype=np.int64)))
    for arrays in frames.iter_files(path, index, ["X", "group"] if normalize else ["group"]):
        tally.add(arrays.get("X"), arrays["group"])
    return tally.to_json()


def _columns(meta: dict) -> int:
    """Columns of X in a frame's meta (its row shape flattened)."""
    return int(np.prod(meta["arrays"]["X"][3], dtype=np.int64))


def batch_records(plan: Plan) -> list[dict[str, Any]]:
    """The record of every batch of the plan; each must exist and match its fingerprint."""
    records = []
    for batch in plan.batches:
        record = batch_facts(plan, batch.index)
        if not record or record.get("fingerprint") != batch.fingerprint:
            raise InputError(f"batch {batch.index} is missing or stale; run its ProcessBatch first")
        records.append(record)
    return records


def summarise(plan: Plan, records: list[dict[str, Any]]) -> dict[str, Any]:
    """File, record and failure counts over all batches; refuses more failures than allowed."""
    failures = [f for record in records for f in record["failures"]]
    warnings = [w for record in records for w in record.get("warnings", [])]
    retry = collections.Counter(f["retry"] for f in failures if "retry" in f)
    files = sum(r["files"] for r in records)
    failed = sum(r["files_failed"] for r in records)
    limit = failure_limit(plan.recipe.max_failures, files)
    if failed > limit:
        raise InputError(f"{failed} of {files} files failed, more than max_failures = "
                         f"{plan.recipe.max_failures} allows ({limit}); first: {describe(failures[0])}")
    seconds = sum(r["seconds"] for r in records)
    reused = sum(r["files_reused"] for r in records)
    return {
        "files": {"discovered": files, "processed": files - failed, "failed": failed},
        "records": {"processed": sum(r["records"] for r in records),
                    "failed": sum(r["records_failed"] for r in records)},
        "rows": sum(r["rows"] for r in records),
        "processing": {"seconds": round(seconds, 3), "files_reused": reused,
                       "files_per_second": round((files - reused) / seconds, 1) if seconds else None},
        "failures": {"by_reason": dict(sorted(collections.Counter(f["error"] for f in failures).items())),
                     "to_retry": dict(sorted(retry.items())),
                     "records": failures},
        "warnings": {"by_reason": dict(sorted(collections.Counter(w["error"] for w in warnings).items())),
                     "records": warnings},
    }


def summary_line(summary: dict[str, Any]) -> str:
    """One line for the terminal: discovered, processed, reused, failed by reason, time, rate."""
    files, processing = summary["files"], summary["processing"]
    reasons = ", ".join(f"{k}: {v}" for k, v in summary["failures"]["by_reason"].items()) or "none"
    retry = ", ".join(f"{v} by {k}" for k, v in summary["failures"].get("to_retry", {}).items())
    rate = processing["files_per_second"]
    return (f"{files['discovered']} files discovered, {files['processed']} processed, "
            f"{processing['files_reused']} reused from earlier runs, {files['failed']} failed; "
            f"{summary['records']['failed']} bad records; failures by reason: {reasons}; "
            + (f"tried again next run (not bad input): {retry}; " if retry else "") +
            f"{processing['seconds']:.1f} s processing" + (f", {rate} files/s" if rate else ""))


def dataset_layout(plan: Plan) -> dict[str, Any] | None:
    """The dataset's row layout chosen over every batch's files (:func:`choose_layout`), or None without rows."""
    entries = [entry for record in batch_records(plan) for entry in record.get("layouts", [])]
    chosen = choose_layout(entries)
    return next((entry for entry in entries if entry["digest"] == chosen), None)


def batches_off_layout(plan: Plan, layout: dict[str, Any] | None) -> list[Batch]:
    """Batches whose rows took another layout than the dataset's: rebuilt with the dataset's."""
    if layout is None:
        return []
    return [batch for batch, record in zip(plan.batches, batch_records(plan), strict=True)
            if record.get("layout") not in (None, layout["digest"])]


def batch_checksums(plan: Plan) -> list[str | None]:
    """The recorded checksum of every batch file of the plan; None where there is no record or
    the batch has files to try again (so that what was merged from it is not current)."""
    records = [batch_facts(plan, batch.index) for batch in plan.batches]
    return [None if retry_pending(record) else record.get("checksum") for record in records]


def _record_identity(plan: Plan, batch: Batch) -> list[int] | None:
    """Size and mtime (ns) of a batch's record file, or None when it is missing."""
    try:
        stat = plan.layout.batch_record(batch.index).stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def record_identities(plan: Plan, records: list[dict[str, Any]]) -> list[list[int]]:
    """:func:`_record_identity` of every batch as the merge reads it (``[]`` for one with files to try again):
    what the merge saw, to tell later that no batch changed without reading the records."""
    return [[] if record.get("retry") else _record_identity(plan, batch)
            for batch, record in zip(plan.batches, records, strict=True)]


def batches_as_merged(plan: Plan, merge_facts: dict[str, Any]) -> bool:
    """Whether the batches are those the merge read: each record unchanged since (one ``stat`` each),
    else their checksums compared (reading every record)."""
    seen = merge_facts.get("records") or []
    if len(seen) == len(plan.batches) and all(seen) and \
            all(_record_identity(plan, batch) == identity for batch, identity in zip(plan.batches, seen, strict=True)):
        return True
    return merge_facts.get("batches") == batch_checksums(plan)


def retry_pending(record: dict[str, Any]) -> bool:
    """Whether a batch has files to try again: failed for a passing reason in an earlier run."""
    return bool(record.get("retry")) and record.get("run") != run_token()


def batch_is_complete(plan: Plan, batch: Batch) -> bool:
    """Cheap check: the record matches the plan, has nothing to retry, and its batch file is intact
    (its size, and its checksum when its mtime changed: see ``records.intact``)."""
    record = read_batch_record(plan, batch.index)
    if record is None or record.fingerprint != batch.fingerprint or retry_pending(record.facts):
        return False
    return all(intact(plan.layout.intermediate / name, output) for name, output in record.outputs.items())


def verify_batch(plan: Plan, batch: Batch) -> str | None:
    """Full check of a batch file against its record (fingerprint, checksum); a problem or None."""
    record = read_batch_record(plan, batch.index)
    if record is None or record.fingerprint != batch.fingerprint or retry_pending(record.facts):
        return f"{plan.layout.batch_record(batch.index)}: missing, stale or with files to try again"
    problems = damaged(plan.layout.intermediate, record)
    return f"{plan.layout.intermediate}/{next(iter(problems.values()))}" if problems else None
