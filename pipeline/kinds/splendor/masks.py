"""Legal-action masks of the seven heads: the position of each CSV row, then its legal moves.

As upstream's ``generate_all_masks_from_row``: the union over all legal moves, not
conditioned on the action type (``card_selection`` is set on a turn that takes tokens).
"""

from __future__ import annotations

import numpy as np

from pipeline.kinds.splendor import rules
from pipeline.kinds.splendor.table import BANK, DECKS, NOBLE, PLAYER, RESERVED, VISIBLE

HEADS = {"action_type": 4, "card_selection": 15, "card_reservation": 15, "gem_take3": 26, "gem_take2": 5,
         "noble": 5, "gems_removed": 84}
"""Upstream's heads and their number of classes, in upstream's order."""


def _rank(present: np.ndarray) -> np.ndarray:
    """Index among the present slots of a row (slot order), -1 for an empty slot."""
    return np.where(present, np.cumsum(present, axis=1) - 1, -1)


def _cards(cards: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    present = ~np.isnan(cards).all(axis=2)
    ints = np.nan_to_num(cards).astype(np.int64)
    return ints[..., 2:7], np.argmax(ints[..., 7:] == 1, axis=2), present


def position(values: np.ndarray) -> rules.Position:
    """The position of the player to move (``player0``) in each row of checked CSV values."""
    visible_cost, visible_bonus, shown = _cards(values[:, VISIBLE])
    # Upstream files displayed cards by their own level, so display indices count level 1 → 3.
    level = np.nan_to_num(values[:, VISIBLE[:, 1]])
    key = np.where(shown, level * 12 + np.arange(12), 99)
    visible_index = np.where(shown, np.argsort(np.argsort(key, axis=1, kind="stable"), axis=1), -1)
    reserved_cost, reserved_bonus, held = _cards(values[:, RESERVED[0]])
    nobles = values[:, NOBLE]
    ints = np.nan_to_num(values).astype(np.int64)
    return rules.Position(bank=ints[:, BANK], tokens=ints[:, PLAYER[0, 2:8]], bonus=ints[:, PLAYER[0, 8:13]],
                          visible_cost=visible_cost, visible_bonus=visible_bonus, visible_index=visible_index,
                          reserved_cost=reserved_cost, reserved_bonus=reserved_bonus, reserved_index=_rank(held),
                          decks=ints[:, DECKS], noble_req=np.nan_to_num(nobles[..., 1:]).astype(np.int64),
                          noble_index=_rank(~np.isnan(nobles).all(axis=2)))


def masks(legal: rules.Legal, all_legal: bool = False) -> dict[str, np.ndarray]:
    """``mask_<head>`` int8 arrays (1 = legal); all ones with ``all_legal`` (upstream's ``enable_masking: false``)."""
    result = {}
    for head in HEADS:
        mask = getattr(legal, head)
        result[f"mask_{head}"] = np.ones(mask.shape, np.int8) if all_legal else mask.astype(np.int8)
    return result
