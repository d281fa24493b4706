"""Upstream's ``preprocessing_stats.json`` and ``mask_validation_report.json``, from a written ``final/``.

As upstream's ``save_preprocessed_data`` and ``validate_masks``: sizes per split, every
action-type label per split in row order, mask statistics and the legality of every
labelled action, on the train split. One key is ours: ``dropped_by_reason``, the run's
failures by error class (rows the reader dropped, e.g. ``IllegalLabel``, are not in final/).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.kinds.splendor.masks import HEADS

SPLITS = ("train", "val", "test")


def _legal_counts(mask: np.ndarray) -> dict[str, Any]:
    sums = mask.sum(axis=1, dtype=np.int64)
    if not len(sums):
        return {"avg_legal_actions": None, "min_legal_actions": None, "max_legal_actions": None}
    return {"avg_legal_actions": float(sums.mean()), "min_legal_actions": int(sums.min()),
            "max_legal_actions": int(sums.max())}


def validation(masks: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Upstream's mask validation report: per head shape, binary values, legal-action counts, illegal labels.

    As upstream, a head whose masks have the wrong shape or values, or (action_type) a row
    with no legal action, is left out of the report.
    """
    report: dict[str, Any] = {}
    failures = 0
    for head, width in HEADS.items():
        mask, label = masks[head], labels[head].astype(np.int64)
        binary = bool(np.isin(mask, (0, 1)).all())
        if mask.shape != (len(label), width) or not binary or (head == "action_type" and (mask.sum(1) == 0).any()):
            continue
        given = np.flatnonzero(label != -1)
        illegal = int((mask[given, label[given]] != 1).sum())
        failures += illegal
        report[head] = {"shape_valid": True, "binary_values": True, **_legal_counts(mask),
                        "illegal_count": illegal, "valid_labels_count": len(given),
                        "legal_rate": (len(given) - illegal) / len(given) * 100 if len(given) else 100.0}
    report["overall_status"] = "FAILED" if failures else "PASSED"
    report["total_failures"] = failures
    return report


def final_files(final_dir: Path, stats: Mapping[str, Any]) -> dict[str, Any]:
    """The two upstream reports for ``final_dir`` (X, labels and masks per split, feature_cols.json)."""
    sizes, actions = {}, {}
    for split in SPLITS:
        sizes[split] = np.load(final_dir / f"X_{split}.npy", mmap_mode="r").shape
        with np.load(final_dir / f"labels_{split}.npz", allow_pickle=False) as labels:
            actions[split] = labels["action_type"].tolist()
    with np.load(final_dir / "labels_train.npz", allow_pickle=False) as labels, \
            np.load(final_dir / "masks_train.npz", allow_pickle=False) as masks:
        train_labels = {head: labels[head] for head in HEADS}
        train_masks = {head: masks[head] for head in HEADS}
    feature_cols = json.loads((final_dir / "feature_cols.json").read_text())
    preprocessing = {
        "total_samples": sum(shape[0] for shape in sizes.values()),
        **{f"{split}_size": sizes[split][0] for split in SPLITS},
        "input_dim": sizes["train"][1], "num_features": len(feature_cols),
        "action_type_distribution": actions,
        "mask_statistics": {head: _legal_counts(mask) for head, mask in train_masks.items()},
    }
    report = validation(train_masks, train_labels)
    report["dropped_by_reason"] = dict(sorted(stats.get("failures", {}).get("by_reason", {}).items()))
    return {"preprocessing_stats.json": preprocessing, "mask_validation_report.json": report}
