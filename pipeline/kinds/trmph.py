"""Hex game records in trmph notation (one game per line) → boards, policy, value.

A line is ``<moves> <winner>``: ``<moves>`` is ``http://www.trmph.com/hex/board#13,a1b2...``
or ``#13,a1b2...``; ``#N,`` gives the board size; a move is a column letter
(``a`` = column 0) and a row number (``1`` = row 0), cell = ``row * N + col``; blue
moves first and colours alternate. The winner is ``b``/``r`` (legacy ``1``/``2``).
Lines starting with ``# `` are comments; blank lines are ignored.

A game of k moves gives k + 1 positions (after 0..k moves). Per position: the board
``uint8[2, N, N]`` (channel 0 blue, 1 red), ``policy`` = the next move's cell (-1 after
the last move), ``value`` = 0.0 if blue won else 1.0, ``player_to_move`` = 0 (blue) on
even move counts. The group is the game itself, so duplicates share one group.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.kinds.base import FileResult, Kind, RecordError, Setting, group_id
from pipeline.kinds.text import read_text_lines

WINNERS = {"b": 0.0, "1": 0.0, "r": 1.0, "2": 1.0}
SELECTORS = ("all", "final", "penultimate")


class GameError(ValueError):
    """A game line that cannot be decoded; the class name of the reason is its ``error``."""

    def __init__(self, error: str, message: str):
        super().__init__(message)
        self.error = error


def parse_moves(moves: str, size: int) -> np.ndarray:
    """Cells (``row * size + col``) of a move string such as ``a1b12``, vectorised."""
    raw = np.frombuffer(moves.encode("ascii", "replace"), dtype=np.uint8)
    is_letter = (raw >= ord("a")) & (raw <= ord("z"))
    is_digit = (raw >= ord("0")) & (raw <= ord("9"))
    if not raw.size or not is_letter[0] or not (is_letter | is_digit).all():
        raise GameError("IllegalCoordinate", f"move string {moves[:40]!r} is not letter+number moves")
    starts = np.flatnonzero(is_letter)
    digits = np.diff(np.append(starts, raw.size)) - 1
    if ((digits < 1) | (digits > 2)).any():
        bad = int(np.flatnonzero((digits < 1) | (digits > 2))[0])
        end = starts[bad + 1] if bad + 1 < starts.size else raw.size
        raise GameError("IllegalCoordinate", f"illegal coordinate {moves[starts[bad]:end]!r}")
    cols = raw[starts].astype(np.int32) - ord("a")
    first = raw[starts + 1].astype(np.int32) - ord("0")
    second = raw[np.minimum(starts + 2, raw.size - 1)].astype(np.int32) - ord("0")
    rows = np.where(digits == 2, first * 10 + second, first) - 1
    off = (cols >= size) | (rows < 0) | (rows >= size)
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise GameError("CellOffBoard", f"move {i + 1} ({chr(cols[i] + 97)}{rows[i] + 1}) is off a {size}x{size} board")
    cells = rows * size + cols
    unique, counts = np.unique(cells, return_counts=True)
    if (counts > 1).any():
        cell = int(unique[counts > 1][0])
        raise GameError("RepeatedCell", f"cell {chr(cell % size + 97)}{cell // size + 1} is played twice")
    return cells


def parse_game(line: str, board_size: int) -> tuple[np.ndarray, float, str]:
    """Cells, winner value and group key of one game line."""
    fields = line.split()
    if len(fields) != 2:
        raise GameError("MissingWinner" if len(fields) == 1 else "BadGameRecord",
                        f"expected '<moves> <winner>', got {len(fields)} fields")
    record, winner = fields
    if winner not in WINNERS:
        raise GameError("UnknownWinner", f"winner {winner!r} is not b, r, 1 or 2")
    head, sep, moves = record.rpartition("#")[2].partition(",")
    if not sep or not head.isdigit():
        raise GameError("BadGameRecord", f"{record[:40]!r} has no '#N,' board size")
    size = int(head)
    if not 1 <= size <= 26:
        raise GameError("BadBoardSize", f"board size {size} is outside 1-26")
    if size != board_size:
        raise GameError("BoardSizeMismatch", f"board size {size} differs from the recipe's board_size {board_size}")
    if not moves:
        raise GameError("NoMoves", "the game has no moves")
    cells = parse_moves(moves, size)
    return cells, WINNERS[winner], f"{size},{moves}"


def encode_game(cells: np.ndarray, value: float, size: int, selector: str) -> dict[str, np.ndarray]:
    """Positions of one game chosen by ``selector``, as boards and targets."""
    k = cells.size
    positions = {"all": np.arange(k + 1), "final": np.array([k]), "penultimate": np.array([k - 1])}[selector]
    before = np.arange(k)[None, :] < positions[:, None]
    row, move = np.nonzero(before)
    boards = np.zeros((positions.size, 2, size * size), dtype=np.uint8)
    boards[row, move % 2, cells[move]] = 1
    policy = np.append(cells, -1).astype(np.int16)[positions]
    return {
        "X": boards.reshape(positions.size, 2, size, size),
        "policy": policy,
        "value": np.full(positions.size, value, dtype=np.float32),
        "player_to_move": (positions % 2).astype(np.uint8),
    }


def read(path: Path, settings: Mapping[str, Any]) -> FileResult:
    """Decode every game of a trmph file; bad games are reported, not fatal."""
    size, selector = settings["board_size"], settings["position_selector"]
    games, errors = [], []
    for number, line in read_text_lines(path):
        if not line.strip() or (line.startswith("#") and not line[1:2].isdigit()):
            continue
        try:
            cells, value, key = parse_game(line, size)
        except GameError as exc:
            errors.append(RecordError(number, exc.error, str(exc)))
            continue
        game = encode_game(cells, value, size, selector)
        game["group"] = np.full(len(game["X"]), group_id(key), dtype=np.uint64)
        games.append(game)
    if not games and not errors:
        raise ValueError("no games in file")
    if not games:
        return FileResult(empty_rows(size), 0, errors)
    arrays = {name: np.concatenate([game[name] for game in games]) for name in games[0]}
    return FileResult(arrays, len(games), errors)


def empty_rows(size: int) -> dict[str, np.ndarray]:
    """Zero rows with the right shapes and dtypes."""
    rows = encode_game(np.arange(1), 0.0, size, "final")
    return {name: array[:0] for name, array in rows.items()} | {"group": np.zeros(0, np.uint64)}


KIND = Kind(
    name="trmph",
    version="1",
    read=read,
    settings={
        "position_selector": Setting(str, "all", SELECTORS, "which positions of each game become rows"),
        "board_size": Setting(int, 13, help="board size N of every game (1-26)",
                              check=lambda n: None if 1 <= n <= 26 else "must be between 1 and 26"),
    },
)
