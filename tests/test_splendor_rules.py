"""The splendor kind's rules engine on hand-made positions: one test per rule of upstream's getMoves."""

from __future__ import annotations

import numpy as np

from pipeline.kinds.splendor.rules import REMOVAL_CLASSES, TAKE3_CLASSES, Position, legal

EMPTY_BANK = (0, 0, 0, 0, 0, 0)
CHEAP = (0, 1, (0, 0, 2, 0, 2), 1)      # blue bonus, costs 2 green 2 black
RED_CARD = (0, 3, (2, 0, 0, 2, 0), 1)   # red bonus, costs 2 white 2 red
BLUE_CARD = (0, 1, (1, 0, 0, 0, 2), 1)  # blue bonus, costs 1 white 2 black


def classes(mask: np.ndarray) -> list[int]:
    return np.flatnonzero(mask[0]).tolist()


def removal(*counts: int) -> int:
    return REMOVAL_CLASSES.index(tuple(counts))


def test_buying_uses_bonuses_then_tokens_then_gold():
    # Green and black bonuses pay the whole cost: no token needed.
    paid = legal(Position.of(EMPTY_BANK, (0,) * 6, bonus=(0, 0, 2, 0, 2), visible=[CHEAP]))
    assert classes(paid.card_selection) == [0]
    # One green token short: a gold token pays it; without gold the card cannot be bought.
    assert classes(legal(Position.of(EMPTY_BANK, (0, 0, 1, 0, 2, 1), visible=[CHEAP])).card_selection) == [0]
    assert classes(legal(Position.of(EMPTY_BANK, (0, 0, 1, 0, 2, 0), visible=[CHEAP])).card_selection) == []
    # Two short with one gold: not buyable. A reserved card is index 12 + its place.
    short = legal(Position.of(EMPTY_BANK, (0, 0, 0, 0, 2, 1), visible=[CHEAP], reserved=[RED_CARD, CHEAP]))
    assert classes(short.card_selection) == []
    held = legal(Position.of(EMPTY_BANK, (2, 0, 2, 2, 2, 0), visible=[BLUE_CARD], reserved=[RED_CARD, CHEAP]))
    assert classes(held.card_selection) == [0, 12, 13]
    assert classes(held.action_type) == [0]


def test_take_three_distinct_colours_or_what_the_bank_has():
    full = legal(Position.of((4, 4, 4, 4, 4, 5), (0,) * 6))
    assert [TAKE3_CLASSES[k] for k in classes(full.gem_take3)] == TAKE3_CLASSES[16:]
    # Only two colours left: take one of each; one colour left: take that one.
    assert [TAKE3_CLASSES[k] for k in classes(legal(Position.of((1, 0, 3, 0, 0, 5), (0,) * 6)).gem_take3)] == [
        ("white", "green")]
    assert [TAKE3_CLASSES[k] for k in classes(legal(Position.of((0, 0, 0, 2, 0, 5), (0,) * 6)).gem_take3)] == [
        ("red",)]
    assert classes(legal(Position.of((0, 0, 0, 0, 0, 5), (0,) * 6)).gem_take3) == []


def test_take_two_only_with_four_in_the_bank():
    moves = legal(Position.of((4, 3, 7, 0, 1, 5), (0,) * 6))
    assert classes(moves.gem_take2) == [0, 2]
    assert classes(moves.action_type) == [2, 3]
    assert classes(legal(Position.of((3, 3, 3, 3, 3, 5), (0,) * 6)).gem_take2) == []


def test_tokens_above_ten_are_returned_from_what_is_held():
    # 9 tokens (no gold) + 3 taken = 12: return 2, any colour held after taking, never gold.
    moves = legal(Position.of((3, 3, 3, 3, 3, 5), (3, 3, 3, 0, 0, 0)))
    returned = [REMOVAL_CLASSES[k] for k in classes(moves.gems_removed)]
    assert returned[0] == (0,) * 6  # class 0 is always set, as upstream
    assert all(sum(r) == 2 and r[5] == 0 for r in returned[1:])
    assert removal(2, 0, 0, 0, 0, 0) in classes(moves.gems_removed)
    assert removal(0, 0, 0, 1, 1, 0) in classes(moves.gems_removed)  # red and black were just taken
    # Taking two: 9 + 2 = 11, return 1.
    two = legal(Position.of((0, 4, 0, 0, 0, 5), (3, 3, 3, 0, 0, 0)))
    assert classes(two.gems_removed) == sorted([0, removal(1, 0, 0, 0, 0, 0), removal(0, 1, 0, 0, 0, 0),
                                                removal(0, 0, 1, 0, 0, 0)])
    # 8 tokens + 2 of a colour = 10: nothing to return.
    assert classes(legal(Position.of((0, 4, 0, 0, 0, 5), (2, 0, 2, 2, 2, 0))).gems_removed) == [0]


def test_a_full_hand_that_can_buy_may_not_take_tokens():
    hand = (2, 2, 2, 2, 2, 0)
    assert classes(legal(Position.of((4, 4, 4, 4, 4, 5), hand, visible=[CHEAP])).action_type) == [0]
    assert classes(legal(Position.of((4, 4, 4, 4, 4, 5), hand, visible=[(3, 0, (0, 3, 3, 5, 3), 3)])).action_type) == [
        2, 3]


def test_reserving_only_with_fewer_than_three_cards_and_nothing_else_legal():
    expensive = (3, 0, (0, 3, 3, 5, 3), 3)
    moves = legal(Position.of(EMPTY_BANK, (0,) * 6, visible=[expensive] * 5, reserved=[expensive] * 2,
                              decks=(1, 0, 4)))
    assert classes(moves.action_type) == [1]
    # Display cards 0-4, then the top of the level-1 deck as 11 and of level 3 as 13.
    assert classes(moves.card_reservation) == [0, 1, 2, 3, 4, 11, 13]
    assert classes(legal(Position.of(EMPTY_BANK, (0,) * 6, visible=[expensive], reserved=[expensive] * 3))
                   .action_type) == []
    # Upstream's engine: no reserving while tokens can be taken.
    assert classes(legal(Position.of((1, 0, 0, 0, 0, 0), (0,) * 6, visible=[expensive])).card_reservation) == []


def test_reserving_at_ten_tokens_returns_one_held_when_a_gold_comes():
    expensive = (3, 0, (0, 3, 3, 5, 3), 3)
    hand = (5, 0, 0, 0, 0, 5)
    moves = legal(Position.of((0, 0, 0, 0, 0, 1), hand, visible=[expensive]))
    assert classes(moves.gems_removed) == sorted([0, removal(1, 0, 0, 0, 0, 0), removal(0, 0, 0, 0, 0, 1)])
    assert classes(legal(Position.of(EMPTY_BANK, hand, visible=[expensive])).gems_removed) == [0]


def test_nobles_come_with_a_purchase_that_meets_their_requirement():
    nobles = [(0, 3, 3, 3, 0), (4, 4, 0, 0, 0)]
    bonus = (0, 3, 3, 2, 0)
    tokens = (2, 0, 0, 2, 2, 0)
    with_red = legal(Position.of((4,) * 5 + (5,), tokens, bonus=bonus, visible=[BLUE_CARD, RED_CARD], nobles=nobles))
    assert classes(with_red.card_selection) == [0, 1]
    assert classes(with_red.noble) == [0]
    blue_only = legal(Position.of((4,) * 5 + (5,), tokens, bonus=bonus, visible=[BLUE_CARD], nobles=nobles))
    assert classes(blue_only.noble) == []
