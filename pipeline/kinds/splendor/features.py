"""Upstream's 422 features (``config_small``: no strategic features), in upstream's column order.

1. The CSV's state columns in CSV order without the metadata (``num_players``,
   ``turn_number``, ``current_player``, ``player{p}_position``), empty cells → 0 (375);
   the 12 cards on display compacted: cards with any non-zero field first (slot order
   kept), empty slots last.
2. ``card{i}_position``: i for a card, -1 for an empty slot; ``player{p}_reserved{r}_position``:
   12 + r for a reserved card, -1 for none (24).
3. One-hots ``current_player_{0-3}``, ``num_players_{2,3,4}``, ``player{p}_position_{0-3}`` (23), of the
   filled values: an empty seat has position 0, so ``player3_position_0`` = 1 in a 2-player game.
"""

from __future__ import annotations

import numpy as np

from pipeline.kinds.splendor.cards import COLORS
from pipeline.kinds.splendor.table import COLUMN, PLAYER, RESERVED, STATE, VISIBLE, columns

METADATA = {"num_players", "turn_number", "current_player", *(f"player{p}_position" for p in range(4))}
BASE = [name for name in STATE if name not in METADATA]
POSITIONS = [*(f"card{i}_position" for i in range(12)),
             *(f"player{p}_reserved{r}_position" for p in range(4) for r in range(3))]
ONEHOTS = [*(f"current_player_{i}" for i in range(4)), *(f"num_players_{n}" for n in (2, 3, 4)),
           *(f"player{p}_position_{s}" for p in range(4) for s in range(4))]
FEATURE_COLS = [*BASE, *POSITIONS, *ONEHOTS]
"""The names of X's 422 columns."""
_BASE = columns(BASE)
_VISIBLE_AT = np.searchsorted(_BASE, VISIBLE)
"""Where the display's card fields sit among the base columns (the base is in header order)."""


def normalized(names: list[str]) -> list[int]:
    """Indices of the columns upstream standardises (``create_normalization_mask``): not a one-hot,
    not a card's bonus colour, nothing named ``position``."""
    binary = {*ONEHOTS, *(name for name in names if name.endswith(tuple(f"_bonus_{c}" for c in COLORS)))}
    return [i for i, name in enumerate(names) if name not in binary and "position" not in name]


def features(values: np.ndarray) -> np.ndarray:
    """X (rows, 422) float32 of checked CSV values (rows, columns of :data:`table.NUMERIC`)."""
    n = len(values)
    x = np.zeros((n, len(FEATURE_COLS)), dtype=np.float32)
    base = np.nan_to_num(values[:, _BASE], nan=0.0)
    cards = base[:, _VISIBLE_AT]
    shown = (cards != 0).any(axis=2)
    order = np.argsort(~shown, axis=1, kind="stable")
    base[:, _VISIBLE_AT] = np.take_along_axis(cards, order[..., None], axis=1)
    x[:, :len(BASE)] = base
    count = shown.sum(axis=1, keepdims=True)
    at = len(BASE)
    x[:, at:at + 12] = np.where(np.arange(12) < count, np.arange(12), -1)
    held = (np.nan_to_num(values[:, RESERVED]) != 0).any(axis=3).reshape(n, 12)
    x[:, at + 12:at + 24] = np.where(held, 12 + np.arange(12) % 3, -1)
    at += 24
    # One-hots of the filled values, as upstream: an empty seat is position 0.
    filled = np.nan_to_num(values[:, [COLUMN["current_player"], COLUMN["num_players"], *PLAYER[:, 0]]], nan=0.0)
    x[:, at:at + 4] = filled[:, :1] == np.arange(4)
    x[:, at + 4:at + 7] = filled[:, 1:2] == np.array([2, 3, 4])
    seats = filled[:, 2:]
    x[:, at + 7:] = (seats[:, :, None] == np.arange(4)).reshape(n, 16)
    return x
