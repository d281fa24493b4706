"""Splendor's rules as upstream's engine applies them, over many positions at once (numpy, no per-row loop).

A :class:`Position` is what the player to move sees: the bank, their tokens, bonuses and
reserved cards, the cards on display, the decks and the nobles. :func:`legal` gives every
legal move of every position, in the class spaces of the seven label heads; it follows
``splendor.board.Board.getMoves`` of splendor_ia, including its choices:

- take three tokens of different colours; when fewer than three colours are left in the
  bank, take one of each colour left (two or one), never fewer;
- take two tokens of one colour only when the bank holds at least 4 of it;
- buy a card on display or reserved: bonuses lower its cost, gold pays what the player's
  tokens do not cover; buying it may bring any noble whose requirement the new bonuses meet;
- a player holding 10 tokens or more who can buy may not take tokens;
- reserving (a card on display or the top of a non-empty deck, with fewer than 3 cards
  held) is legal only when no token or buying move is; it brings a gold token if the bank
  has one, and a player at 10 tokens then returns one token they hold;
- a player above 10 tokens after taking returns the excess (at most 3), any colour held.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from pipeline.kinds.splendor.cards import COLORS, GOLD, MAX_RESERVED, MAX_TOKENS, TAKE_TWO_MIN

TAKE3_CLASSES = [(), *((c,) for c in COLORS), *combinations(COLORS, 2), *combinations(COLORS, 3)]
"""gem_take3 classes: the colour sets of one, two or three tokens (class 0 = no token)."""
TAKE3_SETS = np.array([[c in combo for c in COLORS] for combo in TAKE3_CLASSES])
REMOVAL_CLASSES = [(w, u, g, r, k, o) for w in range(4) for u in range(4) for g in range(4) for r in range(4)
                   for k in range(4) for o in range(4) if w + u + g + r + k + o <= 3]
"""gems_removed classes: tokens returned per colour (white … gold), at most 3 in all (class 0 = none)."""
REMOVALS = np.array(REMOVAL_CLASSES)
REMOVAL_CLASS = np.full(4 ** 6, -1, dtype=np.int64)
REMOVAL_CLASS[REMOVALS @ 4 ** np.arange(5, -1, -1)] = np.arange(len(REMOVALS))
"""Class of a removal by its base-4 code (white most significant); -1 where the sum exceeds 3."""
Card = tuple[int, int, Sequence[int], int]
"""(vp, bonus colour, cost in the five colours, level), as in :mod:`cards`."""


@dataclass
class Position:
    """Positions of many rows: counts as int64 arrays, the first axis the row.

    Cards and nobles carry their index in the label space (-1 = empty slot): display
    index 0-11 counted level 1 → 3, reserved index 0-2, noble index 0-4.
    """

    bank: np.ndarray           # (n, 6) tokens in the bank, gold last
    tokens: np.ndarray         # (n, 6) the player's tokens
    bonus: np.ndarray          # (n, 5) the player's bonuses (cards built per colour)
    visible_cost: np.ndarray   # (n, 12, 5)
    visible_bonus: np.ndarray  # (n, 12)
    visible_index: np.ndarray  # (n, 12)
    reserved_cost: np.ndarray  # (n, 3, 5)
    reserved_bonus: np.ndarray  # (n, 3)
    reserved_index: np.ndarray  # (n, 3)
    decks: np.ndarray          # (n, 3) cards left per level
    noble_req: np.ndarray      # (n, 5, 5)
    noble_index: np.ndarray    # (n, 5)

    @classmethod
    def of(cls, bank: Sequence[int], tokens: Sequence[int], bonus: Sequence[int] = (0,) * 5,
           visible: Sequence[Card] = (), reserved: Sequence[Card] = (), decks: Sequence[int] = (30, 20, 10),
           nobles: Sequence[Sequence[int]] = ()) -> Position:
        """One hand-made position; cards on display and nobles are indexed in the order given."""
        def cards(given: Sequence[Card], slots: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            cost, colour = np.zeros((1, slots, 5), np.int64), np.zeros((1, slots), np.int64)
            for i, (_, card_bonus, card_cost, _) in enumerate(given):
                cost[0, i], colour[0, i] = card_cost, card_bonus
            return cost, colour, np.where(np.arange(slots) < len(given), np.arange(slots), -1)[None]

        req = np.zeros((1, 5, 5), np.int64)
        req[0, :len(nobles)] = np.array(nobles, dtype=np.int64).reshape(-1, 5)
        return cls(np.array([bank]), np.array([tokens]), np.array([bonus]), *cards(visible, 12),
                   *cards(reserved, 3), np.array([decks]), req,
                   np.where(np.arange(5) < len(nobles), np.arange(5), -1)[None])


@dataclass
class Legal:
    """Legal moves per row, each in its head's class space (bool arrays, first axis the row)."""

    action_type: np.ndarray       # (n, 4) build, reserve, take 2 tokens, take 3 tokens
    card_selection: np.ndarray    # (n, 15) cards to buy: display 0-11, reserved 12-14
    card_reservation: np.ndarray  # (n, 15) cards to reserve: display 0-11, top of deck 1-3 as 11-13
    gem_take3: np.ndarray         # (n, 26) colour sets to take
    gem_take2: np.ndarray         # (n, 5) colour to take two of
    noble: np.ndarray             # (n, 5) nobles some legal purchase brings
    gems_removed: np.ndarray      # (n, 84) tokens to return; class 0 (none) always set, as upstream


def _scatter(index: np.ndarray, values: np.ndarray, width: int) -> np.ndarray:
    """(n, width) bool: ``values[:, j]`` placed at column ``index[:, j]`` (index -1: dropped)."""
    out = np.zeros((len(index), width + 1), dtype=bool)
    rows = np.broadcast_to(np.arange(len(index))[:, None], index.shape)
    np.logical_or.at(out, (rows, np.where(index < 0, width, index)), values)
    return out[:, :width]


def _returns(after: np.ndarray) -> np.ndarray:
    """(n, 84): what a player holding ``after`` (n, 6) tokens may return to get down to 10 (class 0 if ≤ 10)."""
    excess = np.minimum(after.sum(axis=1) - MAX_TOKENS, 3)
    fits = (REMOVALS[None] <= after[:, None]).all(axis=2) & (REMOVALS.sum(axis=1)[None] == excess[:, None])
    fits[:, 0] |= excess <= 0
    return fits


def legal(pos: Position) -> Legal:
    """Every legal move of every position (see the module docstring for the rules)."""
    n = len(pos.bank)
    held = pos.tokens.sum(axis=1)
    # Tokens: sets of min(3, colours left) distinct colours, or two of a colour with 4+ in the bank.
    left = pos.bank[:, :5] > 0
    size = np.minimum(left.sum(axis=1), 3)
    take3 = (left[:, None] >= TAKE3_SETS[None]).all(axis=2) & (TAKE3_SETS.sum(axis=1)[None] == size[:, None])
    take3[:, 0] = False
    take2 = pos.bank[:, :5] >= TAKE_TWO_MIN
    # Buying: the real cost after bonuses, gold paying what the tokens do not cover.
    cost = np.concatenate([pos.visible_cost, pos.reserved_cost], axis=1)
    colour = np.concatenate([pos.visible_bonus, pos.reserved_bonus], axis=1)
    index = np.concatenate([pos.visible_index, np.where(pos.reserved_index < 0, -1, 12 + pos.reserved_index)], axis=1)
    real = np.maximum(cost - pos.bonus[:, None], 0)
    gold = real.sum(axis=2) - np.minimum(pos.tokens[:, None, :5], real).sum(axis=2)
    buy = (index >= 0) & (pos.tokens[:, None, GOLD] >= gold)
    # Nobles: met by the bonuses after the purchase (one more of the card's colour).
    after_bonus = pos.bonus[:, None] + np.eye(5, dtype=np.int64)[None]
    meets = (after_bonus[:, :, None] >= pos.noble_req[:, None]).all(axis=3) & (pos.noble_index >= 0)[:, None]
    brings = (buy[..., None] & np.take_along_axis(meets, colour[..., None], axis=1)).any(axis=1)
    can_buy = buy.any(axis=1)
    # A full hand that can buy may not take tokens; reserving only when nothing else is legal.
    take = (take3.any(axis=1) | take2.any(axis=1)) & ~((held >= MAX_TOKENS) & can_buy)
    take3 &= take[:, None]
    take2 &= take[:, None]
    may_reserve = ~take & ~can_buy & ((pos.reserved_index >= 0).sum(axis=1) < MAX_RESERVED)
    reserve = np.zeros((n, 15), dtype=bool)
    reserve[:, :12] = _scatter(pos.visible_index, pos.visible_index >= 0, 12)
    reserve[:, 11:14] |= pos.decks > 0
    reserve &= may_reserve[:, None]
    # Returns: after taking tokens, or one token held when reserving at 10 brings a gold.
    removed = np.zeros((n, len(REMOVALS)), dtype=bool)
    removed[:, 0] = True
    moves = [(take3[:, k], TAKE3_SETS[k].astype(np.int64)) for k in range(1, len(TAKE3_SETS))]
    moves += [(take2[:, c], 2 * np.eye(5, dtype=np.int64)[c]) for c in range(5)]
    for legal_move, taken in moves:
        if legal_move.any():
            removed |= legal_move[:, None] & _returns(pos.tokens + np.append(taken, 0))
    gold_back = reserve.any(axis=1) & (held == MAX_TOKENS) & (pos.bank[:, GOLD] > 0)
    units = REMOVAL_CLASS[4 ** np.arange(5, -1, -1)]
    removed[:, units] |= gold_back[:, None] & (pos.tokens >= 1)
    action_type = np.column_stack([can_buy, reserve.any(axis=1), take2.any(axis=1), take3.any(axis=1)])
    return Legal(action_type, _scatter(index, buy, 15), reserve, take3, take2,
                 _scatter(pos.noble_index, brings, 5), removed)
