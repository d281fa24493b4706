"""The seven label heads as upstream encodes them: class indices, -1 where a head does not apply."""

from __future__ import annotations

import numpy as np

from pipeline.kinds.splendor.cards import COLORS, TOKENS
from pipeline.kinds.splendor.rules import REMOVAL_CLASS, REMOVAL_CLASSES, TAKE3_CLASSES, TAKE3_SETS
from pipeline.kinds.splendor.table import COLUMN, columns

ACTION_TYPES = {"build": 0, "reserve": 1, "take 2 tokens": 2, "take 3 tokens": 3}
TAKE3 = columns([f"gem_take3_{c}" for c in COLORS])
TAKE2 = columns([f"gem_take2_{c}" for c in COLORS])
REMOVED = columns([f"gems_removed_{c}" for c in TOKENS])
TAKE3_CLASS = np.full(32, -1, dtype=np.int64)
TAKE3_CLASS[TAKE3_SETS @ (1 << np.arange(5))] = np.arange(len(TAKE3_SETS))
"""gem_take3 class by the bit set of the colours taken (white = bit 0); -1 for four or five colours."""


def label_mappings() -> dict:
    """Upstream's ``label_mappings.json``: the action types and the classes of gem_take3 and gems_removed."""
    return {"action_type": dict(ACTION_TYPES),
            "gem_take3_classes": {str(k): list(v) for k, v in enumerate(TAKE3_CLASSES)},
            "gem_removal_classes": {str(k): list(v) for k, v in enumerate(REMOVAL_CLASSES)}}


def _index(values: np.ndarray, name: str, low: int, high: int, flag) -> np.ndarray:
    """A column of class indices: empty → -1; a value outside [low, high] or not whole is flagged."""
    column = values[:, COLUMN[name]]
    empty = np.isnan(column)
    flag(~empty & ((column != np.round(column)) | (column < low) | (column > high)),
         f"{name}: not an index in {low}..{high}")
    return np.where(empty, -1, np.nan_to_num(column)).astype(np.int64)


def labels(values: np.ndarray, action: np.ndarray, flag) -> dict[str, np.ndarray]:
    """The label heads (int16) of each row; ``flag(rows, message)`` records rows upstream could not encode."""
    known = np.isin(action, list(ACTION_TYPES))
    flag(~known, f"action_type: not one of {', '.join(ACTION_TYPES)}")
    action_type = np.array([ACTION_TYPES.get(a, 0) for a in action], dtype=np.int64)
    taken = values[:, TAKE3] == 1
    take3 = np.where(taken.any(axis=1), TAKE3_CLASS[taken @ (1 << np.arange(5))], -1)
    doubled = values[:, TAKE2] == 2
    take2 = np.where(doubled.any(axis=1), np.argmax(doubled, axis=1), -1)
    removed = values[:, REMOVED]
    whole = np.isfinite(removed).all(axis=1) & (removed == np.round(removed)).all(axis=1)
    counts = np.where(whole[:, None], removed, 0).astype(np.int64)
    code = np.clip(counts, 0, 3) @ 4 ** np.arange(5, -1, -1)
    removal = np.where(((counts >= 0) & (counts <= 3)).all(axis=1), REMOVAL_CLASS[code], -1)
    flag(removal < 0, "gems_removed: not a return of at most 3 tokens")
    heads = {"action_type": action_type,
             "card_selection": _index(values, "card_selection", 0, 14, flag),
             "card_reservation": _index(values, "card_reservation", 0, 14, flag),
             "gem_take3": take3, "gem_take2": take2,
             "noble": _index(values, "noble_selection", -1, 4, flag),
             "gems_removed": np.maximum(removal, 0)}
    return {head: label.astype(np.int16) for head, label in heads.items()}
