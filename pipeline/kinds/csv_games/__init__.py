"""Game-log CSVs (one row per turn, e.g. Splendor) → features, label heads and masks.

Every setting lives in the recipe's ``[process]`` table and is resolved against each
file's header, so a per-file output depends on that file and the recipe only:

- ``feature_columns``: names or glob patterns (``card*_vp``), in order; each pattern adds
  the header columns it matches in header order, each column once. Patterns skip columns
  used as labels, masks or the group column, and anything matching ``exclude_columns``.
- ``categorical_features``: ``column → [categories]``; the column is one-hot encoded in
  place as ``<column>_<category>`` (missing → all zeros; another value is a bad row).
- ``fill``: ``column or pattern → value`` for missing features (default 0; two values for one
  column are an error);
  ``missing_indicators``: columns (or patterns) that get a ``<column>_missing`` column after them.
- ``label_columns``: ``head → {type, ...}``. ``type = "categorical"`` maps ``column``
  (default: the head) to the index of its value in the declared ``classes`` (missing → -1;
  a value not declared is a bad row); ``type = "numeric"`` takes ``columns`` as float32
  (one name, default the head: shape (rows,); a list of names/patterns: (rows, k)), missing
  → ``fill`` (default 0). Every head gets a mask ``mask_<head>``: 1 where its label is present.
- ``mask_columns``: ``name → column or [columns or patterns]``: extra masks (non-zero → 1,
  missing → 0; one name gives (rows,), a list (rows, k)); a mask named like a head is
  combined with that head's presence.
- ``group_column``: the column naming the game (rows with the same value share a group,
  across files); empty (default): each file is one game, keyed by its relative path.

Missing values are the fields listed in ``missing_values`` (default: empty, ``nan``,
``NaN``) and any non-finite number, so no NaN or inf reaches X. A bad row (a wrong
value, a wrong field count, a row over 1 MiB, an unclosed quote at the end) is recorded
with its physical line and dropped; each row read keeps its 0-based data row as
``source_row``. ``feature_cols`` and ``label_mappings`` travel as metadata and become
``final/feature_cols.json`` and ``final/label_mappings.json``.
"""

from __future__ import annotations

import csv
import fnmatch
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.kinds.base import REQUIRED, FileResult, Kind, RecordError, Setting, group_id
from pipeline.kinds.csv_games.rows import read_table, row_lines

LABEL_TYPES = ("categorical", "numeric")
LABEL_KEYS = {"categorical": {"type", "column", "classes"}, "numeric": {"type", "columns", "fill"}}
GLOB_CHARS = frozenset("*?[")
MAX_FILE_BYTES = 256 << 20
"""Files above are refused unread: the reader holds the file and its parsed columns in memory."""
MAX_ROW_BYTES = 1 << 20
"""A row longer than this is a bad row: a real game turn is a few kB."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _names(value: Any) -> list[str]:
    """A column setting as a list: one name or a list of names/patterns."""
    return [value] if isinstance(value, str) else list(value)


def _check_strings(value: Any) -> str | None:
    if not all(isinstance(item, str) and item for item in value):
        return "must be a list of non-empty column names or patterns"
    return None


def _check_categories(what: str, values: Any) -> str | None:
    if not isinstance(values, list) or not values:
        return f"{what} must be a non-empty list"
    if not (all(_is_number(v) for v in values) or all(isinstance(v, str) for v in values)):
        return f"{what} must be all numbers or all strings"
    if len(set(values)) != len(values):
        return f"{what} has duplicates"
    return None


def check_labels(heads: Mapping[str, Any]) -> str | None:
    """Why ``label_columns`` is impossible, or None."""
    if not heads:
        return "must name at least one label head"
    for head, spec in heads.items():
        if head in ("X", "group") or head.startswith("mask_"):
            return f"head {head!r} clashes with the engine's names (X, group, mask_*)"
        if not isinstance(spec, dict) or spec.get("type") not in LABEL_TYPES:
            return f"head {head!r} needs type = {' or '.join(map(repr, LABEL_TYPES))}"
        unknown = sorted(set(spec) - LABEL_KEYS[spec["type"]])
        if unknown:
            known = ", ".join(sorted(LABEL_KEYS[spec["type"]]))
            return f"head {head!r} has unknown key {unknown[0]!r} (known: {known})"
        if spec["type"] == "categorical":
            problem = _check_categories(f"head {head!r} classes", spec.get("classes"))
            if problem:
                return problem
            if not isinstance(spec.get("column", head), str):
                return f"head {head!r} column must be one column name"
        elif not isinstance(spec.get("columns", head), str | list) or _check_strings(_names(spec.get("columns", head))):
            return f"head {head!r} columns must be a column name or a list of names/patterns"
        elif not _is_number(spec.get("fill", 0)):
            return f"head {head!r} fill must be a number"
    return None


def check_categorical(features: Mapping[str, Any]) -> str | None:
    for column, categories in features.items():
        problem = _check_categories(f"column {column!r} categories", categories)
        if problem:
            return problem
    return None


def check_masks(masks: Mapping[str, Any]) -> str | None:
    for name, columns in masks.items():
        if not isinstance(columns, str | list) or _check_strings(_names(columns)):
            return f"mask {name!r} must be a column name or a list of names/patterns"
    return None


def check_fill(fill: Mapping[str, Any]) -> str | None:
    bad = [key for key, value in fill.items() if not _is_number(value) or not np.isfinite(value)]
    return f"fill for {bad[0]!r} must be a finite number" if bad else None


def resolve(patterns: list[str], header: list[str], skip: set[str] = frozenset(), what: str = "column") -> list[str]:
    """Header columns named by ``patterns``, in pattern order then header order, each once."""
    chosen: dict[str, None] = {}
    for pattern in patterns:
        if GLOB_CHARS.isdisjoint(pattern):
            if pattern not in header:
                raise ValueError(f"{what} {pattern!r} is not in the header")
            matches = [] if pattern in skip else [pattern]
        else:
            matches = [c for c in header if fnmatch.fnmatchcase(c, pattern) and c not in skip]
            if not matches:
                raise ValueError(f"{what} pattern {pattern!r} matches no column")
        chosen.update(dict.fromkeys(matches))
    return list(chosen)


def read_header(path: Path) -> list[str]:
    """The column names on the first line of a CSV file."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        raise ValueError("empty file: no header line")
    seen = set()
    for name in header:
        if name in seen:
            raise ValueError(f"column {name!r} appears twice in the header")
        seen.add(name)
    return header


class Columns:
    """The columns one file's header gives for the recipe's settings."""

    def __init__(self, header: list[str], settings: Mapping[str, Any]):
        heads = settings["label_columns"]
        self.labels = {head: resolve([spec.get("column", head)] if spec["type"] == "categorical"
                                     else _names(spec.get("columns", head)), header, what=f"label {head!r} column")
                       for head, spec in heads.items()}
        self.masks = {name: resolve(_names(columns), header, what=f"mask {name!r} column")
                      for name, columns in settings["mask_columns"].items()}
        self.group = settings["group_column"]
        if self.group and self.group not in header:
            raise ValueError(f"group_column {self.group!r} is not in the header")
        used = {c for cols in [*self.labels.values(), *self.masks.values()] for c in cols} | {self.group}
        excluded = set(resolve(settings["exclude_columns"], header, what="exclude_columns"))
        for name in settings["feature_columns"]:
            if GLOB_CHARS.isdisjoint(name) and name in used:
                raise ValueError(f"feature column {name!r} is also a label, mask or group column")
        self.features = resolve(settings["feature_columns"], header, used | excluded, "feature column")
        self.categorical = dict(settings["categorical_features"])
        outside = sorted(set(self.categorical) - set(self.features))
        if outside:
            raise ValueError(f"categorical feature {outside[0]!r} is not among the feature columns")
        numeric = [c for c in self.features if c not in self.categorical]
        indicated = set(resolve(settings["missing_indicators"], numeric, what="missing_indicators column"))
        fills: dict[str, float] = {}
        for key, value in settings["fill"].items():
            for column in resolve([key], numeric, what="fill column"):
                if fills.setdefault(column, float(value)) != float(value):
                    raise ValueError(f"fill gives column {column!r} two values ({fills[column]:g} and {value:g})")
        self.numeric = numeric
        self.fill = np.array([fills.get(c, 0.0) for c in numeric])
        names, value_pos, indicator_pos, indicator_src = [], [], [], []
        self.onehot_pos: dict[str, int] = {}
        for column in self.features:
            if column in self.categorical:
                self.onehot_pos[column] = len(names)
                names += [f"{column}_{category}" for category in self.categorical[column]]
                continue
            value_pos.append(len(names))
            names.append(column)
            if column in indicated:
                indicator_pos.append(len(names))
                indicator_src.append(len(value_pos) - 1)
                names.append(f"{column}_missing")
        self.names = names
        self.value_pos, self.indicator_pos = np.array(value_pos, int), np.array(indicator_pos, int)
        self.indicator_src = np.array(indicator_src, int)

    def types(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The Arrow type of every column read: numbers as float64, declared texts as strings."""
        import pyarrow as pa

        def typed(values: list) -> Any:
            return pa.float64() if all(_is_number(v) for v in values) else pa.string()

        types = {c: pa.float64() for c in self.numeric}
        types |= {c: typed(cats) for c, cats in self.categorical.items()}
        for head, spec in settings["label_columns"].items():
            types |= {c: typed(spec["classes"]) if spec["type"] == "categorical" else pa.float64()
                      for c in self.labels[head]}
        types |= {c: pa.float64() for cols in self.masks.values() for c in cols}
        return types | ({self.group: pa.string()} if self.group else {})


def label_mappings(settings: Mapping[str, Any], columns: Columns) -> dict[str, Any]:
    """What each label head holds: classes by index (categorical) or its columns (numeric)."""
    result = {}
    for head, spec in settings["label_columns"].items():
        if spec["type"] == "categorical":
            result[head] = {"type": "categorical", "column": columns.labels[head][0],
                            "classes": list(spec["classes"]), "missing": -1}
        else:
            result[head] = {"type": "numeric", "columns": columns.labels[head], "fill": float(spec.get("fill", 0))}
    return result


def _codes(values: np.ndarray, categories: list) -> tuple[np.ndarray, np.ndarray]:
    """Index of each value in ``categories`` (-1 if absent) and where the value is missing."""
    if all(_is_number(c) for c in categories):
        values = values.astype(np.float64)
        missing = ~np.isfinite(values)
        order = np.argsort(categories, kind="stable")
        known = np.asarray(categories, dtype=np.float64)[order]
        at = np.minimum(np.searchsorted(known, values), len(known) - 1)
        codes = np.where(known[at] == values, order[at], -1)
    else:
        import pandas as pd

        missing = np.asarray(pd.isna(values))
        codes = pd.Index(categories).get_indexer(values)
    codes[missing] = -1
    return codes, missing


@functools.lru_cache(maxsize=8)
def _columns(header: tuple[str, ...], settings: str) -> Columns:
    """The columns of a header, computed once per header and recipe (files usually share one)."""
    return Columns(list(header), json.loads(settings))


def read(path: Path, settings: Mapping[str, Any]) -> FileResult:
    """Features, label heads, masks and groups of one game-log CSV; bad rows are dropped and recorded."""
    import pandas as pd

    columns = _columns(tuple(read_header(path)), json.dumps(settings))
    raw = path.read_bytes()
    lines, lengths, unclosed = row_lines(raw)
    data, ragged, wrong = read_table(raw, columns, settings)
    rows = len(next(iter(data.values()))) if data else 0
    if len(lines) <= 1:
        raise ValueError("no rows: the file has a header only")
    if rows + len(ragged) != len(lines) - 1:
        raise ValueError(f"cannot tell the line of each row: {len(lines) - 1} rows by their line ends, "
                         f"{rows + len(ragged)} read")
    unread = [number - 2 for number, _ in ragged]
    source = np.delete(np.arange(len(lines) - 1), unread)  # the data row of each row read
    lost = {len(lines) - 2: ("UnclosedQuote", "a quoted field is never closed: the file ends inside it")
            } if unclosed else {}
    for row in np.flatnonzero(lengths[1:] > MAX_ROW_BYTES).tolist():
        lost.setdefault(row, ("RowTooLong", f"row is {lengths[row + 1]} bytes, more than the limit of "
                                            f"{MAX_ROW_BYTES} (an oversize field or a quote never closed)"))
    for row, (_, message) in zip(unread, ragged, strict=True):
        lost.setdefault(row, ("RaggedRow", message))
    bad: dict[int, str] = {}

    def flag(where: np.ndarray, message: str) -> None:
        for row in np.flatnonzero(where):
            bad.setdefault(int(row), message)

    for row, message in sorted(wrong.items()):
        bad[row] = message
    values = np.column_stack([data[c] for c in columns.numeric]) if columns.numeric else np.zeros((rows, 0))
    missing = ~np.isfinite(values)
    features = np.zeros((rows, len(columns.names)), dtype=np.float32)
    features[:, columns.value_pos] = np.where(missing, columns.fill, values)
    features[:, columns.indicator_pos] = missing[:, columns.indicator_src]
    for column, start in columns.onehot_pos.items():
        codes, absent = _codes(data[column], columns.categorical[column])
        flag((codes < 0) & ~absent, f"{column}: value not among the declared categories")
        present = codes >= 0
        features[np.flatnonzero(present), start + codes[present]] = 1

    arrays: dict[str, np.ndarray] = {"X": features}
    for head, spec in settings["label_columns"].items():
        names = columns.labels[head]
        if spec["type"] == "categorical":
            codes, absent = _codes(data[names[0]], spec["classes"])
            flag((codes < 0) & ~absent, f"{head}: {names[0]} value not among the declared classes")
            arrays[head], present = codes.astype(np.int64), ~absent
        else:
            label = np.column_stack([data[c] for c in names])
            finite = np.isfinite(label)
            label = np.where(finite, label, float(spec.get("fill", 0))).astype(np.float32)
            one = isinstance(spec.get("columns", head), str)
            arrays[head], present = (label[:, 0] if one else label), finite.all(axis=1)
        arrays[f"mask_{head}"] = present.astype(np.uint8)
    for name, names in columns.masks.items():
        given = np.column_stack([data[c] for c in names])
        mask = (np.isfinite(given) & (given != 0)).astype(np.uint8)
        if name in settings["label_columns"]:
            mask &= arrays[f"mask_{name}"][:, None]
        arrays[f"mask_{name}"] = mask[:, 0] if isinstance(settings["mask_columns"][name], str) else mask

    if columns.group:
        keys, inverse = np.unique(data[columns.group].astype(str), return_inverse=True)
        arrays["group"] = np.array([group_id(k) for k in keys], dtype=np.uint64)[inverse.reshape(-1)]
        flag(np.asarray(pd.isna(data[columns.group])), f"{columns.group}: the group column is missing")

    lost |= {int(source[row]): ("BadValue", message) for row, message in bad.items() if int(source[row]) not in lost}
    keep = ~np.isin(source, list(lost))
    arrays = {name: array[keep] for name, array in arrays.items()} | {"source_row": source[keep].astype(np.int64)}
    errors = [RecordError(int(lines[row + 1]), error, message) for row, (error, message) in sorted(lost.items())]
    metadata = {"feature_cols": columns.names, "label_mappings": label_mappings(settings, columns)}
    return FileResult(arrays, int(keep.sum()), errors, metadata=metadata)


KIND = Kind(
    name="csv_games",
    version="2",
    read=read,
    settings={
        "feature_columns": Setting(list, ["*"], help="feature columns: names or glob patterns, in order",
                                   check=_check_strings),
        "exclude_columns": Setting(list, [], help="names or patterns never taken as features", check=_check_strings),
        "label_columns": Setting(dict, REQUIRED, help="label heads: head → {type = categorical|numeric, ...}",
                                 check=check_labels),
        "mask_columns": Setting(dict, {}, help="extra masks: name → columns or patterns (non-zero → 1)",
                                check=check_masks),
        "categorical_features": Setting(dict, {}, help="features one-hot encoded: column → [categories]",
                                        check=check_categorical),
        "fill": Setting(dict, {}, help="value of missing features: column or pattern → number (default 0)",
                        check=check_fill),
        "missing_indicators": Setting(list, [], help="features (or patterns) that get a <column>_missing column",
                                      check=_check_strings),
        "missing_values": Setting(list, ["", "nan", "NaN"], help="field texts that mean missing",
                                  check=lambda v: None if all(isinstance(x, str) for x in v) else "must be strings"),
        "group_column": Setting(str, "", help="column naming the game; empty: one game per file"),
    },
    max_file_bytes=MAX_FILE_BYTES,
)
