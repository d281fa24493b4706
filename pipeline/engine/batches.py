"""Processing one batch of input files: per-file outputs reused or made, then one batch file.

An input file whose processing took long enough gets its own output
(``files/<relative>.npz``, with its fingerprint and failure records inside), so an
interrupted batch resumes file by file; a cheaper file is redone after a crash, as
redoing it costs less than writing one more file. The batch file
(``intermediate/batch_NNNN.npz``) is the per-file rows concatenated, streamed member by
member; its record (``batch_NNNN.json``: fingerprint, size, checksum, counts, failures)
is written last and is what marks the batch complete.
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.engine.discovery import InputFile
from pipeline.engine.plan import Batch, Plan
from pipeline.engine.storage import NpzWriter, atomic_open, file_checksum, read_json, save_npz, write_json
from pipeline.errors import PipelineError
from pipeline.kinds.base import Kind, as_file_result, group_id

META = "_meta"
Progress = Callable[[int, int, int], None]


class InputError(PipelineError):
    """Bad input under ``on_error = "fail"``; the message names the file, line and reason."""


def failure(file: str, line: int | None, error: str, message: str) -> dict[str, Any]:
    """One failure record: which file and line, the error class and its message."""
    return {"file": file, "line": line, "error": error, "message": message}


def describe(record: dict[str, Any]) -> str:
    """``file:line: Error: message`` for a failure record."""
    where = record["file"] + (f":{record['line']}" if record["line"] else "")
    return f"{where}: {record['error']}: {record['message']}"


def process_file(kind: Kind, settings: dict, path: Path, relative: str) -> tuple[dict, list[dict], int, bool]:
    """Run the kind on one file: rows, failure records, good records, and whether to keep it.

    Any exception is a failure of the whole file. An OSError (permission denied, file
    gone) is not kept, so the next run tries the file again.
    """
    try:
        result = as_file_result(kind.read(path, settings))
    except Exception as exc:  # noqa: BLE001 - a bad file is recorded, never a crash
        message = str(exc).replace(str(path), relative) or type(exc).__name__
        return {}, [failure(relative, None, type(exc).__name__, message)], 0, not isinstance(exc, OSError)
    arrays = result.arrays
    if "group" not in arrays:
        arrays["group"] = np.full(len(arrays["X"]), group_id(relative), dtype=np.uint64)
    failures = [failure(relative, e.line, e.error, e.message) for e in result.errors]
    return arrays, failures, result.records, True


def load_file_output(path: Path, fingerprint: str) -> tuple[dict, dict] | None:
    """Arrays and metadata of a per-file output, or None when missing, stale or corrupt."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data[META]))
            if meta.get("fingerprint") != fingerprint:
                return None
            arrays = {name: data[name] for name in data.files if name != META}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return arrays, meta


def file_output(plan: Plan, file: InputFile, fingerprint: str, checkpoint_s: float = 0.0,
                room: int = 0) -> tuple[dict, dict]:
    """The output of one input file: reused when fresh and intact, else made.

    A made output is saved when making it took at least ``checkpoint_s`` seconds, or when
    its rows exceed ``room`` bytes (the batch cannot hold them and reads them back).
    """
    layout, recipe = plan.layout, plan.recipe
    out = layout.file_output(file.relative)
    cached = load_file_output(out, fingerprint)
    if cached is not None:
        return cached
    started = time.perf_counter()
    arrays, failures, records, keep = process_file(
        recipe.kind, recipe.kind_settings, recipe.input_dir / file.relative, file.relative)
    rows = len(arrays["X"]) if arrays else 0
    meta = {"fingerprint": fingerprint, "file": file.relative, "records": records, "rows": rows,
            "failed": not arrays, "failures": failures}
    took = time.perf_counter() - started
    if keep and (took >= checkpoint_s or sum(array.nbytes for array in arrays.values()) > room):
        save_npz(out, {**arrays, META: np.array(json.dumps(meta))})
    return arrays, meta


def _row_spec(arrays: dict[str, np.ndarray]) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {name: (array.dtype.str, array.shape[1:]) for name, array in sorted(arrays.items())}


def build_batch(plan: Plan, batch: Batch, progress: Progress | None = None, hold_bytes: int = 0,
                checkpoint_s: float = 0.0) -> dict[str, Any]:
    """Make every file output of ``batch`` and the batch file; return the batch record.

    Rows of up to ``hold_bytes`` stay in memory for writing the batch file; the files
    beyond that budget are read back from their outputs, so memory stays bounded. A file
    whose processing took less than ``checkpoint_s`` gets no output of its own unless it
    is beyond the budget.
    """
    layout, on_error = plan.layout, plan.recipe.on_error
    metas, spec, failures, held, held_bytes = [], None, [], [], 0
    for done, (file, fingerprint) in enumerate(zip(batch.files, batch.file_fingerprints, strict=True), start=1):
        arrays, meta = file_output(plan, file, fingerprint, checkpoint_s, hold_bytes - held_bytes)
        size = sum(array.nbytes for array in arrays.values())
        hold = bool(meta["rows"]) and held_bytes + size <= hold_bytes
        held.append(arrays if hold else None)
        held_bytes += size if hold else 0
        if arrays and meta["rows"]:
            file_spec = _row_spec(arrays)
            spec = spec or file_spec
            if file_spec != spec:
                meta = {**meta, "rows": 0, "failed": True, "failures": meta["failures"] + [failure(
                    file.relative, None, "RowShapeMismatch",
                    f"rows {file_spec} differ from the batch's {spec}")]}
        failures.extend(meta["failures"])
        if failures and on_error == "fail":
            raise InputError(describe(failures[0]))
        metas.append(meta)
        if progress:
            progress(done, len(batch.files), len(failures))
    rows = sum(meta["rows"] for meta in metas)
    path = layout.batch(batch.index)
    with atomic_open(path) as handle:
        writer = NpzWriter(handle)
        for name, (dtype, row_shape) in (spec or {}).items():
            writer.add(name, _member_chunks(plan, batch, metas, held, name), np.dtype(dtype), row_shape, rows)
        writer.close()
    record = {
        "fingerprint": batch.fingerprint,
        "size": path.stat().st_size,
        "checksum": file_checksum(path),
        "rows": rows,
        "arrays": {name: {"dtype": dtype, "shape": list(shape)} for name, (dtype, shape) in (spec or {}).items()},
        "files": len(metas),
        "files_failed": sum(meta["failed"] for meta in metas),
        "records": sum(meta["records"] for meta in metas),
        "records_failed": sum(1 for f in failures if f["line"] is not None),
        "failures": failures,
    }
    write_json(layout.batch_record(batch.index), record)
    return record


def _member_chunks(plan: Plan, batch: Batch, metas: list[dict], held: list[dict | None], name: str):
    """One array of each file output with rows in file order: held in memory, else read back."""
    for file, meta, arrays in zip(batch.files, metas, held, strict=True):
        if not meta["rows"]:
            continue
        if arrays is not None:
            yield arrays[name]
            continue
        with np.load(plan.layout.file_output(file.relative), allow_pickle=False) as data:
            yield data[name]


def batch_is_complete(plan: Plan, batch: Batch) -> bool:
    """Cheap check: the record exists, matches the plan, and the batch file has its size."""
    record = read_json(plan.layout.batch_record(batch.index))
    if not record or record.get("fingerprint") != batch.fingerprint:
        return False
    try:
        return plan.layout.batch(batch.index).stat().st_size == record["size"]
    except OSError:
        return False


def verify_batch(plan: Plan, batch: Batch) -> str | None:
    """Full check of a batch file against its record's checksum; a problem or None."""
    record = read_json(plan.layout.batch_record(batch.index)) or {}
    path = plan.layout.batch(batch.index)
    try:
        checksum = file_checksum(path)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if checksum != record.get("checksum"):
        return f"{path}: checksum {checksum} differs from the recorded {record.get('checksum')}"
    return None
