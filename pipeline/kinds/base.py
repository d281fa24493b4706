"""The recipe-kind API: what a kind declares and what reading one input file returns.

A kind is a pure function ``read(path, settings) -> rows`` plus the schema of its
settings. It knows nothing of Luigi, batches or storage: the engine does the I/O.

Rows are named numpy arrays sharing their first dimension (or a pyarrow Table, whose
``group``, ``label_<name>`` and ``mask_<name>`` columns are taken as such and whose other
columns, in order, are stacked into ``X``):

- ``X``: the features (required when there are rows);
- ``group``: uint64 group ids (optional; by default every row of a file is one group,
  keyed by the file's relative path);
- ``mask_<name>``: masks, written to ``masks_<split>.npz`` under ``<name>``;
- ``source_<x>``: provenance (e.g. the record's line), column ``<x>`` of ``rows_<split>.parquet``;
- every other name is a label head, written to ``labels_<split>.npz``.

A kind that can skip bad records inside a good file returns a :class:`FileResult`
with the :class:`RecordError` list; a problem with the whole file is raised as any
exception and recorded by the engine with the exception's class and message. A kind
whose product is a file per input (a ``command``) returns it as ``blobs``: named bytes
the engine writes atomically beside the per-file output.

A :class:`FileResult` may also carry ``metadata``: JSON-able descriptions of the rows
(the names of X's columns, the classes of a label head), keyed by a plain name. It must
be the same for every file of a dataset; each key becomes ``final/<key>.json``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

METADATA_KEY = re.compile(r"[a-z0-9_]+")
RESERVED_METADATA = frozenset({"manifest", "stats", "normalization"})
"""Metadata keys that would clash with the engine's own files in ``final/``."""

REQUIRED = object()
"""Marks a :class:`Setting` that has no default and must be given in the recipe."""


@dataclass(frozen=True)
class Setting:
    """One key of a recipe table: its type, default, allowed values and help text."""

    type: type | tuple[type, ...]
    default: Any = REQUIRED
    choices: tuple = ()
    help: str = ""
    check: Callable[[Any], str | None] | None = None
    """Returns an error message for an impossible value, or None."""


class BadInputError(ValueError):
    """A kind's own error for an input file it cannot use; raise it (or any ValueError) for bad input.

    Only bad input is remembered as a file's result. Any other exception is taken for a bug
    in the code (or, for an OSError, a passing condition) and the file is tried again.
    """


@dataclass(frozen=True)
class RecordError:
    """A bad record inside an input file: 1-based line, error class, message.

    A ``warning`` is a record kept with a remark (a trmph game cut at a repeated move): it is
    listed in ``stats.json`` under ``warnings``, never counted as a failure.
    """

    line: int | None
    error: str
    message: str
    warning: bool = False


@dataclass
class FileResult:
    """What reading one input file gave: its rows, good record count, bad records, metadata."""

    arrays: dict[str, np.ndarray]
    records: int
    errors: list[RecordError] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


Reader = Callable[[Path, Mapping[str, Any]], "FileResult | dict[str, np.ndarray]"]


@dataclass(frozen=True)
class Kind:
    """A recipe kind: a name, a version that invalidates old outputs, a reader, settings.

    ``settings`` are extra keys of the recipe's ``[process]`` table. A kind whose data is
    not "one input file → rows" (a time series, a frame sequence) names its own ``flow``
    (the task graph that builds it, see ``pipeline.tasks.FLOWS``), has ``read = None``,
    and may declare whole ``tables`` of its own. ``max_file_bytes`` is the size above which
    an input file is refused unread (``FileTooLarge``): a reader that holds a file in memory
    documents how large a file it takes.
    """

    name: str
    version: str
    read: Reader | None
    settings: Mapping[str, Setting] = field(default_factory=dict)
    flow: str = "files"
    tables: Mapping[str, Mapping[str, Setting]] = field(default_factory=dict)
    normalize_columns: Callable[[Mapping[str, Any], Mapping[str, Any]], list[int]] | None = None
    """``(settings, metadata) -> indices`` of the X columns to standardise when the recipe's
    ``[split] normalize`` is true (fitted on train, mean and population std, scale 1 where
    the std is 0); None: the engine chooses (every column not binary or constant in train)."""
    final_files: Callable[[Path, Mapping[str, Any]], Mapping[str, Any]] | None = None
    """``(final_dir, stats) -> {file name: JSON-able}``: the kind's own reports, computed from
    the written ``final/`` (X, labels, masks per split) and the run's stats (rows, failures,
    files, records); the engine writes each as ``final/<file name>``."""
    max_file_bytes: int | None = None


def group_id(key: str) -> np.uint64:
    """A stable 64-bit group id for a group key (a game's moves, a file's relative path)."""
    return np.frombuffer(hashlib.blake2b(key.encode(), digest_size=8).digest(), dtype="<u8")[0]


def table_arrays(table: Any) -> dict[str, np.ndarray]:
    """Named arrays of a pyarrow Table: group, label_*, mask_* by name, the rest stacked as X."""
    arrays, features = {}, []
    for name in table.column_names:
        column = table.column(name).to_numpy()
        if name == "group" or name.startswith("mask_"):
            arrays[name] = column
        elif name.startswith("label_"):
            arrays[name.removeprefix("label_")] = column
        else:
            features.append(column)
    if features:
        arrays["X"] = np.column_stack(features)
    return arrays


def as_file_result(value: Any) -> FileResult:
    """Normalise what a reader returned (FileResult, dict of arrays, pyarrow Table); check its rows."""
    if hasattr(value, "column_names") and hasattr(value, "num_rows"):
        value = FileResult(table_arrays(value), records=value.num_rows)
    elif not isinstance(value, FileResult):
        value = dict(value)
        value = FileResult(value, records=len(value["X"]) if "X" in value else 0)
    arrays = {name: np.asarray(array) for name, array in value.arrays.items()}
    if arrays and "X" not in arrays:
        raise ValueError(f"reader returned arrays {sorted(arrays)} but no 'X'")
    if not arrays:
        return value
    group = arrays.get("group")
    if group is not None and group.dtype.kind not in "iu":
        keys, inverse = np.unique(group.astype(str), return_inverse=True)
        arrays["group"] = np.array([group_id(key) for key in keys], dtype=np.uint64)[inverse]
    rows = len(arrays["X"])
    for name, array in arrays.items():
        if array.ndim == 0 or len(array) != rows:
            raise ValueError(f"reader returned {name!r} with {array.shape} rows, X has {rows}")
        if array.dtype.hasobject:
            raise ValueError(f"reader returned {name!r} of object dtype; use numeric arrays")
    if "group" in arrays:
        arrays["group"] = arrays["group"].astype(np.uint64, copy=False)
    for key in value.metadata:
        if not METADATA_KEY.fullmatch(key) or key in RESERVED_METADATA:
            raise ValueError(f"reader returned metadata key {key!r}: use [a-z0-9_]+, not {sorted(RESERVED_METADATA)}")
    value.arrays = arrays
    return value
