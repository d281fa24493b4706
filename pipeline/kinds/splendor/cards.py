"""Splendor's card and noble tables (transcribed from the game), colours and card signatures.

A card is ``(vp, bonus, cost, level)``: victory points, the colour index of its bonus,
its cost in the five colours (white, blue, green, red, black) and its level 1-3.
A noble is ``(vp, requirement)``: bonuses needed in the five colours.
"""

from __future__ import annotations

import numpy as np

COLORS = ("white", "blue", "green", "red", "black")
TOKENS = (*COLORS, "gold")
"""Token colours in the CSV's order; gold is index 5."""

GOLD = 5
MAX_TOKENS = 10
MAX_RESERVED = 3
TAKE_TWO_MIN = 4
"""A player may take two tokens of one colour only when the bank holds at least this many."""

LEVEL1 = (
    (0, 0, (0, 2, 0, 0, 2)), (0, 1, (0, 0, 2, 0, 2)), (0, 2, (0, 2, 0, 2, 0)), (0, 3, (2, 0, 0, 2, 0)),
    (0, 4, (2, 0, 2, 0, 0)), (0, 0, (3, 1, 0, 0, 1)), (0, 1, (0, 1, 3, 1, 0)), (0, 2, (1, 3, 1, 0, 0)),
    (0, 3, (1, 0, 0, 1, 3)), (0, 4, (0, 0, 1, 3, 1)), (0, 0, (0, 1, 2, 1, 1)), (0, 1, (1, 0, 1, 2, 1)),
    (0, 2, (1, 1, 0, 1, 2)), (0, 3, (2, 1, 1, 0, 1)), (0, 4, (1, 2, 1, 1, 0)), (0, 0, (0, 0, 0, 2, 1)),
    (0, 1, (1, 0, 0, 0, 2)), (0, 2, (2, 1, 0, 0, 0)), (0, 3, (0, 2, 1, 0, 0)), (0, 4, (0, 0, 2, 1, 0)),
    (0, 0, (0, 2, 2, 0, 1)), (0, 1, (1, 0, 2, 2, 0)), (0, 2, (0, 1, 0, 2, 2)), (0, 3, (2, 0, 1, 0, 2)),
    (0, 4, (2, 2, 0, 1, 0)), (0, 0, (0, 1, 1, 1, 1)), (0, 1, (1, 0, 1, 1, 1)), (0, 2, (1, 1, 0, 1, 1)),
    (0, 3, (1, 1, 1, 0, 1)), (0, 4, (1, 1, 1, 1, 0)), (0, 0, (0, 3, 0, 0, 0)), (0, 1, (0, 0, 0, 0, 3)),
    (0, 2, (0, 0, 0, 3, 0)), (0, 3, (3, 0, 0, 0, 0)), (0, 4, (0, 0, 3, 0, 0)), (1, 0, (0, 0, 4, 0, 0)),
    (1, 1, (0, 0, 0, 4, 0)), (1, 2, (0, 0, 0, 0, 4)), (1, 3, (4, 0, 0, 0, 0)), (1, 4, (0, 4, 0, 0, 0)),
)
LEVEL2 = (
    (1, 0, (0, 0, 3, 2, 2)), (1, 1, (0, 2, 2, 3, 2)), (1, 2, (2, 3, 0, 0, 2)), (1, 3, (2, 0, 0, 2, 3)),
    (1, 4, (3, 2, 2, 0, 0)), (1, 0, (2, 3, 0, 3, 0)), (1, 1, (0, 2, 3, 0, 3)), (1, 2, (3, 0, 2, 3, 0)),
    (1, 3, (0, 3, 0, 2, 3)), (1, 4, (3, 0, 3, 0, 2)), (2, 0, (0, 0, 1, 4, 2)), (2, 1, (2, 0, 0, 1, 4)),
    (2, 2, (4, 2, 0, 0, 1)), (2, 3, (1, 4, 2, 0, 0)), (2, 4, (0, 1, 4, 2, 0)), (2, 0, (0, 0, 0, 5, 3)),
    (2, 1, (5, 3, 0, 0, 0)), (2, 2, (0, 5, 3, 0, 0)), (2, 3, (3, 0, 0, 0, 5)), (2, 4, (0, 0, 5, 3, 0)),
    (2, 0, (0, 0, 0, 5, 0)), (2, 1, (0, 5, 0, 0, 0)), (2, 2, (0, 0, 5, 0, 0)), (2, 3, (0, 0, 0, 0, 5)),
    (2, 4, (5, 0, 0, 0, 0)), (3, 0, (6, 0, 0, 0, 0)), (3, 1, (0, 6, 0, 0, 0)), (3, 2, (0, 0, 6, 0, 0)),
    (3, 3, (0, 0, 0, 6, 0)), (3, 4, (0, 0, 0, 0, 6)),
)
LEVEL3 = (
    (3, 0, (0, 3, 3, 5, 3)), (3, 1, (3, 0, 3, 3, 5)), (3, 2, (5, 3, 0, 3, 3)), (3, 3, (3, 5, 3, 0, 3)),
    (3, 4, (3, 3, 5, 3, 0)), (4, 0, (3, 0, 0, 3, 6)), (4, 1, (6, 3, 0, 0, 3)), (4, 2, (3, 6, 3, 0, 0)),
    (4, 3, (0, 3, 6, 3, 0)), (4, 4, (0, 0, 3, 6, 3)), (4, 0, (0, 0, 0, 0, 7)), (4, 1, (7, 0, 0, 0, 0)),
    (4, 2, (0, 7, 0, 0, 0)), (4, 3, (0, 0, 7, 0, 0)), (4, 4, (0, 0, 0, 7, 0)), (5, 0, (3, 0, 0, 0, 7)),
    (5, 1, (7, 3, 0, 0, 0)), (5, 2, (0, 7, 3, 0, 0)), (5, 3, (0, 0, 7, 3, 0)), (5, 4, (0, 0, 0, 7, 3)),
)
CARDS = tuple((vp, bonus, cost, level) for level, deck in enumerate((LEVEL1, LEVEL2, LEVEL3), start=1)
              for vp, bonus, cost in deck)
"""Every card of the game: 40 of level 1, 30 of level 2, 20 of level 3."""

NOBLES = (
    (3, (4, 4, 0, 0, 0)), (3, (4, 0, 0, 0, 4)), (3, (0, 0, 0, 4, 4)), (3, (0, 4, 4, 0, 0)), (3, (0, 0, 4, 4, 0)),
    (3, (0, 3, 3, 3, 0)), (3, (3, 3, 3, 0, 0)), (3, (0, 0, 3, 3, 3)), (3, (3, 0, 0, 3, 3)), (3, (3, 3, 0, 0, 3)),
)


def signature(vp: np.ndarray, bonus: np.ndarray, cost: np.ndarray, level: np.ndarray) -> np.ndarray:
    """One integer per card (any shape, ``cost`` with a trailing axis of 5); equal iff the cards are equal
    when every field is an integer in [0, 64)."""
    key = vp.astype(np.int64) * 64 + bonus
    for color in range(5):
        key = key * 64 + cost[..., color]
    return key * 64 + level


CARD_SIGNATURES = np.sort(signature(*(np.array(column) for column in zip(*CARDS, strict=True))))
"""The signatures of the game's cards, sorted (for ``np.isin``)."""
