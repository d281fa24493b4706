"""Upstream's game-log CSV: its 403 columns, reading one file into arrays, and which rows are impossible.

The exporter writes one row per turn: the board before the move (missing card slots,
nobles, reservations and seats are empty cells), then the move in 20 label columns.
Players are rotated so that ``player0`` is the player to move.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.kinds.base import RecordError
from pipeline.kinds.splendor.cards import CARD_SIGNATURES, COLORS, TOKENS, signature

CARD_FIELDS = ("vp", "level", *(f"cost_{c}" for c in COLORS), *(f"bonus_{c}" for c in COLORS))
NOBLE_FIELDS = ("vp", *(f"req_{c}" for c in COLORS))


def _card(prefix: str) -> list[str]:
    return [f"{prefix}_{field}" for field in CARD_FIELDS]


def _player(p: int) -> list[str]:
    return [f"player{p}_position", f"player{p}_vp", *(f"player{p}_gems_{c}" for c in TOKENS),
            *(f"player{p}_reduction_{c}" for c in COLORS),
            *(name for r in range(3) for name in _card(f"player{p}_reserved{r}"))]


STATE = ["num_players", "turn_number", "current_player", *(f"gems_board_{c}" for c in TOKENS),
         *(name for i in range(12) for name in _card(f"card{i}")),
         *(f"deck_level{level}_remaining" for level in (1, 2, 3)),
         *(f"noble{i}_{field}" for i in range(5) for field in NOBLE_FIELDS),
         *(name for p in range(4) for name in _player(p))]
"""The 382 state columns, in the exporter's order."""
MOVE = ["action_type", "card_selection", "card_reservation", *(f"gem_take3_{c}" for c in COLORS),
        *(f"gem_take2_{c}" for c in COLORS), "noble_selection", *(f"gems_removed_{c}" for c in TOKENS)]
"""The 20 label columns."""
HEADER = ["game_id", *STATE, *MOVE]
NUMERIC = [name for name in HEADER if name != "action_type"]
"""The columns read as numbers, in header order: the columns of :attr:`Rows.values`."""
COLUMN = {name: i for i, name in enumerate(NUMERIC)}
_KNOWN = frozenset(HEADER)


def columns(names: list[str] | np.ndarray) -> np.ndarray:
    """Indices in :attr:`Rows.values` of column names (any nested shape)."""
    return np.vectorize(COLUMN.__getitem__, otypes=[np.intp])(np.asarray(names))


BANK = columns([f"gems_board_{c}" for c in TOKENS])
VISIBLE = columns([_card(f"card{i}") for i in range(12)])
DECKS = columns([f"deck_level{level}_remaining" for level in (1, 2, 3)])
NOBLE = columns([[f"noble{i}_{field}" for field in NOBLE_FIELDS] for i in range(5)])
PLAYER = columns([_player(p) for p in range(4)])
"""(4, 49): position, vp, gems (6), reductions (5), three reserved cards (3 × 12)."""
RESERVED = PLAYER[:, 13:].reshape(4, 3, 12)


@dataclass
class Rows:
    """One file's good-shaped rows: numbers (NaN = empty cell), the action texts, their 0-based data rows."""

    values: np.ndarray
    action: np.ndarray
    rows: np.ndarray
    errors: list[RecordError]


def read_header(path: Path) -> list[str]:
    """The file's header, checked against upstream's columns: one clear error naming what differs."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        raise ValueError("empty file: no header line")
    given = set(header)
    missing = [name for name in HEADER if name not in given]
    unknown = [name for name in header if name not in _KNOWN]
    if missing or unknown or len(header) != len(HEADER):
        what = f"missing {missing[:3]}" if missing else f"unknown {unknown[:3]}" if unknown else "duplicates"
        raise ValueError(f"header is not splendor_ia's 403 columns ({what})")
    return header


@functools.lru_cache(maxsize=2)
def _types(as_text: bool) -> dict:
    import pyarrow as pa

    number = pa.string() if as_text else pa.float64()
    return {name: number for name in NUMERIC} | {"action_type": pa.string()}


def _read(path: Path, as_text: bool, ragged: list) -> object:
    import pyarrow.csv as pacsv

    def skip(row: object) -> str:
        ragged.append(row)
        return "skip"

    options = pacsv.ConvertOptions(column_types=_types(as_text), null_values=[""], strings_can_be_null=True)
    return pacsv.read_csv(path, read_options=pacsv.ReadOptions(use_threads=False),
                          parse_options=pacsv.ParseOptions(invalid_row_handler=skip), convert_options=options)


def _parse(texts: list) -> tuple[np.ndarray, np.ndarray]:
    """Numbers of a text column (empty → NaN) and where a cell is not a number."""
    values, bad = np.full(len(texts), np.nan), np.zeros(len(texts), dtype=bool)
    for i, text in enumerate(texts):
        if text is None:
            continue
        try:
            values[i] = float(text)
        except ValueError:
            bad[i] = True
    return values, bad


def read_rows(path: Path) -> Rows:
    """The rows of one game log; a ragged row or a cell that is not a number is recorded and dropped."""
    import pyarrow as pa

    read_header(path)
    ragged: list = []
    try:
        table = _read(path, False, ragged)
        values = np.column_stack([table.column(name).to_numpy(zero_copy_only=False) for name in NUMERIC])
        wrong = np.zeros(values.shape, dtype=bool)
    except pa.ArrowInvalid:
        ragged.clear()
        table = _read(path, True, ragged)
        parsed = [_parse(table.column(name).to_pylist()) for name in NUMERIC]
        values = np.column_stack([column for column, _ in parsed])
        wrong = np.column_stack([cells for _, cells in parsed])
    ragged.sort(key=lambda row: row.number)
    errors = [RecordError(row.number, "RaggedRow", f"{row.actual_columns} fields, the header has "
                          f"{row.expected_columns}") for row in ragged]
    data_rows = np.delete(np.arange(len(values) + len(ragged)), [row.number - 2 for row in ragged])
    bad = wrong.any(axis=1)
    for i in np.flatnonzero(bad):
        name = NUMERIC[int(np.flatnonzero(wrong[i])[0])]
        errors.append(RecordError(int(data_rows[i]) + 2, "BadValue", f"{name}: not a number"))
    action = np.asarray(table.column("action_type").to_numpy(zero_copy_only=False), dtype=object)
    keep = ~bad
    return Rows(values[keep], action[keep], data_rows[keep], errors)


def _integral(values: np.ndarray, low: float = 0, high: float = 63) -> np.ndarray:
    return np.isfinite(values) & (values == np.round(values)) & (values >= low) & (values <= high)


def _check_cards(cards: np.ndarray, where: str) -> tuple[np.ndarray, str]:
    """Rows where a card of ``cards`` (rows, k, 12) is neither empty nor one of the game's cards."""
    empty = np.isnan(cards).all(axis=-1)
    whole = _integral(cards).all(axis=-1)
    onehot = cards[..., 7:]
    bonus = np.argmax(onehot == 1, axis=-1)
    ints = np.where(whole[..., None], cards, 0).astype(np.int64)
    known = np.isin(signature(ints[..., 0], bonus, ints[..., 2:7], ints[..., 1]), CARD_SIGNATURES)
    known &= (onehot.sum(axis=-1) == 1) & whole
    return (~empty & ~known).any(axis=-1), f"{where}: a card that is not in the game"


def check(values: np.ndarray) -> dict[int, str]:
    """Rows (index → reason) whose board is impossible: what upstream's state rebuild cannot parse."""
    bad: dict[int, str] = {}

    def flag(where: np.ndarray, message: str) -> None:
        for row in np.flatnonzero(where):
            bad.setdefault(int(row), message)

    players, current = values[:, COLUMN["num_players"]], values[:, COLUMN["current_player"]]
    flag(~np.isin(players, (2, 3, 4)), "num_players: not 2, 3 or 4")
    flag(~_integral(current) | (current >= np.nan_to_num(players, nan=0)), "current_player: not a seat of the game")
    flag(values[:, PLAYER[0, 0]] != current, "player0_position: not the current player")
    flag(~_integral(values[:, BANK]).all(axis=1), "gems_board: not a count")
    flag(~_integral(values[:, DECKS]).all(axis=1), "deck_level*_remaining: not a count")
    nobles = values[:, NOBLE]
    flag((~np.isnan(nobles).all(axis=-1) & ~_integral(nobles).all(axis=-1)).any(axis=1), "noble: not a noble")
    flag(*_check_cards(values[:, VISIBLE], "card"))
    seated = ~np.isnan(values[:, PLAYER[:, 0]])
    for p in range(4):
        counts = _integral(values[:, PLAYER[p, 1:13]]).all(axis=1)
        flag(seated[:, p] & ~counts, f"player{p}: vp, gems and reductions must be counts")
        where, message = _check_cards(values[:, RESERVED[p]], f"player{p}_reserved")
        flag(seated[:, p] & where, message)
    return bad
