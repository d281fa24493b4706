"""Stage records: the one completion and integrity model of every stage of every flow.

A stage (a batch, the merge, the split, a ticks chunk × universe, a ptv chunk, the report)
writes its outputs first, each atomically, then its record ``records/<stage>.json``:

- ``fingerprint``: what made the outputs (settings, inputs and the code that ran, see
  :func:`code_digest`); a record whose fingerprint differs from the plan's is stale;
- ``outputs``: every file the stage wrote, by path relative to the output folder, with its
  size, CRC-32 checksum and modification time (ns);
- ``facts``: what the stage knows that later stages or the report need (counts, failures).

``is_complete`` is cheap (one JSON read and one ``stat`` per output): an output whose size
differs is missing; one whose modification time differs (written to since) is read and its
checksum compared, so a byte changed in place is caught without reading unchanged files.
``damaged`` reads every output and compares checksums (``Status --verify``).

A record is the only licence to delete: Cleanup, a split and re-chunking remove only
paths that a record lists (:func:`remove_outputs`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from pipeline.engine.storage import file_checksum, read_json, write_json

RECORDS = "records"
"""Folder of the stage records below an output folder."""


@dataclass(frozen=True)
class Output:
    """One file a stage wrote: size in bytes, CRC-32 checksum (``crc32:xxxxxxxx``) and mtime in ns.

    The mtime is compared for equality only (never with a clock), so it holds across hosts;
    ``None`` (an older record) means "check the checksum".
    """

    size: int
    checksum: str
    mtime_ns: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class StageRecord:
    """What a stage wrote and what made it; written last, after every output is in place."""

    stage: str
    fingerprint: str
    outputs: Mapping[str, Output] = field(default_factory=dict)
    facts: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "fingerprint": self.fingerprint,
                "outputs": {name: {"size": o.size, "checksum": o.checksum, "mtime_ns": o.mtime_ns}
                            for name, o in sorted(self.outputs.items())},
                "facts": dict(self.facts)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StageRecord:
        outputs = {name: Output(int(o["size"]), str(o["checksum"]), o.get("mtime_ns"))
                   for name, o in data["outputs"].items()}
        return cls(str(data["stage"]), str(data["fingerprint"]), outputs, data.get("facts") or {})


def record_path(root: Path, stage: str) -> Path:
    """Where the record of ``stage`` lives (``stage`` may hold ``/``: ``batches/0003``)."""
    return root / RECORDS / f"{stage}.json"


def output_entry(path: Path, checksum: str | None = None) -> Output:
    """The size, checksum (computed by reading it unless the writer knew it) and mtime of ``path``."""
    stat = path.stat()
    return Output(stat.st_size, checksum or file_checksum(path), stat.st_mtime_ns)


def write_record(root: Path, stage: str, fingerprint: str, outputs: Mapping[str, Output] | Iterable[Path],
                 facts: Mapping[str, Any] | None = None) -> StageRecord:
    """Write the record of ``stage``: its outputs (paths below ``root``, or ready entries) and facts."""
    if not isinstance(outputs, Mapping):
        outputs = {str(Path(p).relative_to(root)): output_entry(Path(p)) for p in outputs}
    record = StageRecord(stage, fingerprint, dict(outputs), dict(facts or {}))
    write_json(record_path(root, stage), record.to_json())
    return record


def read_record(root: Path, stage: str) -> StageRecord | None:
    """The record of ``stage``, or None when missing or unreadable."""
    data = read_json(record_path(root, stage))
    try:
        return StageRecord.from_json(data) if data else None
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def intact(path: Path, output: Output) -> bool:
    """Cheap check of one output: its size, then its checksum only when its mtime changed."""
    try:
        stat = path.stat()
        if stat.st_size != output.size:
            return False
        return stat.st_mtime_ns == output.mtime_ns or file_checksum(path) == output.checksum
    except OSError:
        return False


def current_record(root: Path, stage: str, fingerprint: str) -> StageRecord | None:
    """The record of ``stage`` when it matches ``fingerprint`` and every output is :func:`intact`."""
    record = read_record(root, stage)
    if record is None or record.fingerprint != fingerprint:
        return None
    return record if all(intact(root / name, output) for name, output in record.outputs.items()) else None


def is_complete(root: Path, stage: str, fingerprint: str) -> bool:
    """Cheap completion: the record is current and its outputs have their sizes (no data read)."""
    return current_record(root, stage, fingerprint) is not None


def damaged(root: Path, record: StageRecord, names: Iterable[str] | None = None) -> dict[str, str]:
    """The outputs of ``record`` (or ``names`` of them) that are missing or whose checksum differs,
    each with what is wrong (``name: ...``)."""
    problems = {}
    for name in sorted(names if names is not None else record.outputs):
        expected = record.outputs[name]
        try:
            actual = output_entry(root / name)
        except OSError as exc:
            problems[name] = f"{name}: {exc.strerror or exc}"
            continue
        if (actual.size, actual.checksum) != (expected.size, expected.checksum):
            problems[name] = (f"{name}: {actual.size} bytes, {actual.checksum}; recorded {expected.size} bytes, "
                              f"{expected.checksum}")
    return problems


def mark_damaged(root: Path, record: StageRecord, names: Iterable[str]) -> None:
    """Rewrite ``record`` so the outputs ``names`` fail the cheap check: the next build redoes the stage.

    The record keeps listing them, so they stay the pipeline's to replace or delete.
    """
    names = set(names)
    outputs = {name: Output(o.size, o.checksum, -1) if name in names else o for name, o in record.outputs.items()}
    write_json(record_path(root, record.stage), StageRecord(record.stage, record.fingerprint, outputs,
                                                            record.facts).to_json())


def all_records(root: Path) -> list[StageRecord]:
    """Every readable stage record below ``root`` (one listing of the records folder)."""
    folder = root / RECORDS
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.rglob("*.json")):
        stage = str(path.relative_to(folder))[:-len(".json")]
        record = read_record(root, stage)
        if record:
            records.append(record)
    return records


def remove_record(root: Path, stage: str, delete_outputs: bool = True) -> int:
    """Remove a stage's record (first) and, if asked, the outputs it lists; return the bytes freed."""
    record = read_record(root, stage)
    record_path(root, stage).unlink(missing_ok=True)
    return remove_outputs(root, record.outputs) if record and delete_outputs else 0


def remove_outputs(root: Path, names: Iterable[str]) -> int:
    """Delete the listed files below ``root`` (and folders they leave empty); return the bytes freed.

    The only deletion the pipeline does: every name comes from one of its own records, so a
    file it did not write is never touched.
    """
    freed = 0
    for name in names:
        path = root / name
        if root.resolve() not in path.resolve().parents:
            continue  # a record naming something outside the output folder is never obeyed
        try:
            freed += path.stat().st_size
            path.unlink()
        except OSError:
            continue
        parent = path.parent
        while parent != root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    return freed


def _source_files(module: ModuleType) -> list[Path]:
    """The source files of a module, or of every module of a package."""
    path = Path(inspect.getsourcefile(module) or module.__file__ or "")
    if path.name == "__init__.py":
        return sorted(path.parent.rglob("*.py"))
    return [path]


@functools.lru_cache(maxsize=64)
def _module_digest(name: str) -> str:
    module = sys.modules.get(name) or importlib.import_module(name)
    hasher = hashlib.blake2b(digest_size=12)
    for path in _source_files(module):
        hasher.update(path.name.encode())
        try:
            hasher.update(path.read_bytes())
        except OSError:
            hasher.update(b"?")
    return hasher.hexdigest()


def code_digest(*objects: Any) -> str:
    """A hash of the source code of the modules defining ``objects`` (modules, module names, functions or classes).

    Part of every stage's fingerprint, so that changing a reader or the engine code a stage
    runs rebuilds what it made, even without a version bump.
    """
    names = sorted({obj if isinstance(obj, str) else obj.__name__ if isinstance(obj, ModuleType) else obj.__module__
                    for obj in objects})
    return hashlib.blake2b("\0".join(f"{n}:{_module_digest(n)}" for n in names).encode(), digest_size=12).hexdigest()


@dataclass(frozen=True)
class Stage:
    """A stage a flow expects for its recipe: record name, current fingerprint, and its role.

    Each flow lists its stages (``flow_stages``) so that Status, verification and Cleanup
    work the same for every flow: ``intermediate`` outputs may be removed by Cleanup once
    every final stage is complete and verified; final ones never are.
    """

    name: str
    fingerprint: str
    intermediate: bool
