"""Kind ``splendor``: splendor_ia's game logs → upstream's imitation-learning dataset, exactly.

One CSV per game (``{2,3,4}_games/<id>.csv``, written by upstream's exporter) → per row:
``X`` (422 features of ``config_small``, un-normalised, float32), the seven label heads
as upstream's class indices (int16, -1 = not applicable), their legal-action masks
``mask_<head>`` (int8, from the rules engine) and ``source_row`` (the CSV data row).
A row whose board cannot be a Splendor position, whose labels cannot be encoded, or
whose labelled move is illegal is recorded with its line and dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.kinds.base import FileResult, Kind, RecordError, Setting
from pipeline.kinds.splendor import rules
from pipeline.kinds.splendor.features import FEATURE_COLS, features, normalized
from pipeline.kinds.splendor.labels import label_mappings, labels
from pipeline.kinds.splendor.masks import HEADS, masks, position
from pipeline.kinds.splendor.report import final_files
from pipeline.kinds.splendor.table import check, read_rows


def _illegal(heads: Mapping[str, np.ndarray], legal: rules.Legal) -> dict[int, str]:
    """Rows whose labelled move is not legal under the head's own mask (index → message)."""
    bad: dict[int, str] = {}
    for head in HEADS:
        label, mask = heads[head].astype(np.int64), getattr(legal, head)
        given = label >= 0
        ok = np.take_along_axis(mask, np.maximum(label, 0)[:, None], axis=1)[:, 0]
        for row in np.flatnonzero(given & ~ok):
            bad.setdefault(int(row), f"{head}: class {label[row]} is not a legal move here "
                                     f"(legal: {', '.join(map(str, np.flatnonzero(mask[row]))) or 'none'})")
    return bad


def read(path: Path, settings: Mapping[str, Any]) -> FileResult:
    """Features, labels, masks and CSV rows of one game log; bad rows are recorded and dropped."""
    table = read_rows(path)
    if not len(table.rows) and not table.errors:
        raise ValueError("no rows: the file has a header only")
    bad = check(table.values)

    def flag(where: np.ndarray, message: str) -> None:
        for row in np.flatnonzero(where):
            bad.setdefault(int(row), message)

    heads = labels(table.values, table.action, flag)
    kind = {row: "BadValue" for row in bad}
    good = np.setdiff1d(np.arange(len(table.rows)), list(bad))
    legal = rules.legal(position(table.values[good]))
    illegal = _illegal({head: label[good] for head, label in heads.items()}, legal)
    for at, message in illegal.items():
        bad[int(good[at])], kind[int(good[at])] = message, "IllegalLabel"
    keep = np.setdiff1d(np.arange(len(good)), list(illegal))
    rows = good[keep]
    arrays = {"X": features(table.values[rows])}
    arrays |= {head: label[rows] for head, label in heads.items()}
    all_legal = not settings["masking"]
    arrays |= {name: mask[keep] for name, mask in masks(legal, all_legal).items()}
    arrays["source_row"] = table.rows[rows].astype(np.int64)
    errors = table.errors + [RecordError(int(table.rows[row]) + 2, kind[row], message)
                             for row, message in sorted(bad.items())]
    errors.sort(key=lambda error: error.line)
    metadata = {"feature_cols": FEATURE_COLS, "label_mappings": label_mappings()}
    return FileResult(arrays, len(rows), errors, metadata=metadata)


def normalize_columns(settings: Mapping[str, Any], metadata: Mapping[str, Any]) -> list[int]:
    """The X columns upstream standardises, by name (255 of 422)."""
    return normalized(list(metadata["feature_cols"]))


KIND = Kind(
    name="splendor",
    version="1",
    read=read,
    settings={"masking": Setting(bool, True, help="legal-action masks from the rules; false: all ones "
                                                  "(upstream's config_small.yaml, enable_masking: false)")},
    normalize_columns=normalize_columns,
    final_files=final_files,
)
