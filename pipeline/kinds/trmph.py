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


def parse_header(line: str, board_size: int) -> tuple[str, float, str]:
    """Move string, winner value and group key of one game line; the moves are not checked yet."""
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
    return moves, WINNERS[winner], f"{size},{moves}"


def parse_game(line: str, board_size: int) -> tuple[np.ndarray, float, str]:
    """Cells, winner value and group key of one game line."""
    moves, value, key = parse_header(line, board_size)
    return parse_moves(moves, board_size), value, key


def parse_many(moves: list[str], size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells of many non-empty move strings in one vectorised pass.

    Returns the cells of the good games concatenated, the move count of each good game,
    and a mask of the bad games (each fails :func:`parse_moves`, which names the reason).
    """
    raw = np.frombuffer("".join(moves).encode("ascii", "replace"), dtype=np.uint8)
    lengths = np.fromiter(map(len, moves), dtype=np.int64, count=len(moves))
    game_starts = np.cumsum(lengths) - lengths
    is_letter = (raw >= ord("a")) & (raw <= ord("z"))
    bad = np.zeros(len(moves), dtype=bool)
    strange = np.flatnonzero(~(is_letter | (raw >= ord("0")) & (raw <= ord("9"))))
    bad[np.searchsorted(game_starts, strange, side="right") - 1] = True
    bad[~is_letter[game_starts]] = True
    token = is_letter.copy()
    token[game_starts] = True  # a move never runs on into the next game, even in a bad game
    starts = np.flatnonzero(token)
    game = np.searchsorted(game_starts, starts, side="right") - 1
    digits = np.diff(np.append(starts, raw.size)) - 1
    cols = raw[starts].astype(np.int32) - ord("a")
    first = raw[np.minimum(starts + 1, raw.size - 1)].astype(np.int32) - ord("0")
    second = raw[np.minimum(starts + 2, raw.size - 1)].astype(np.int32) - ord("0")
    rows = np.where(digits == 2, first * 10 + second, first) - 1
    valid = (digits >= 1) & (digits <= 2) & (cols >= 0) & (cols < size) & (rows >= 0) & (rows < size)
    bad[game[~valid]] = True
    cells = rows * size + cols
    places = game[valid] * (size * size) + cells[valid]
    order = np.arange(places.size)
    last = np.empty(len(moves) * size * size, dtype=np.int64)
    last[places] = order  # a cell played twice in one game keeps only its later move here
    bad[game[valid][last[places] != order]] = True
    keep = ~bad[game]
    return cells[keep], np.bincount(game, minlength=len(moves))[~bad], bad


def encode_games(cells: np.ndarray, lengths: np.ndarray, values: np.ndarray, size: int, selector: str,
                 groups: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Positions chosen by ``selector`` of games given as concatenated ``cells`` and move counts.

    ``values`` (and ``groups`` if given, added as ``group``) hold one entry per game.

    A stone is on the board of position p of its game when its move index is below p, so
    each game's boards are one comparison of its "move index per cell" table with 0..k.
    """
    games, cell_count = lengths.size, size * size
    first_move = np.cumsum(lengths) - lengths
    move = np.arange(cells.size) - np.repeat(first_move, lengths)
    dtype = np.uint8 if cell_count < np.iinfo(np.uint8).max else np.uint16
    played = np.full((games, 2 * cell_count), np.iinfo(dtype).max, dtype=dtype)  # [colour][cell], flat
    played[np.repeat(np.arange(games), lengths), move % 2 * cell_count + cells] = move
    counts = lengths + 1 if selector == "all" else np.ones(games, dtype=np.int64)
    ends = np.cumsum(counts)
    position = {"all": np.arange(int(ends[-1]) if games else 0) - np.repeat(ends - counts, counts),
                "final": lengths, "penultimate": lengths - 1}[selector]
    boards = np.empty((position.size, 2 * cell_count), dtype=bool)
    if selector == "all":
        steps = np.arange(int(counts.max()) if games else 0, dtype=dtype)[:, None]
        for game, (end, count) in enumerate(zip(ends.tolist(), counts.tolist(), strict=True)):
            np.less(played[game], steps[:count], out=boards[end - count:end])
    else:
        np.less(played, position.astype(dtype)[:, None], out=boards)
    game_of = np.repeat(np.arange(games), counts)
    next_move = np.where(position < lengths[game_of], first_move[game_of] + position, cells.size)
    rows = {
        "X": boards.view(np.uint8).reshape(position.size, 2, size, size),
        "policy": np.append(cells, -1).astype(np.int16)[next_move],
        "value": np.repeat(np.asarray(values, dtype=np.float32), counts),
        "player_to_move": (position % 2).astype(np.uint8),
    }
    if groups is not None:
        rows["group"] = np.asarray(groups, dtype=np.uint64)[game_of]
    return rows


def encode_game(cells: np.ndarray, value: float, size: int, selector: str) -> dict[str, np.ndarray]:
    """Positions of one game chosen by ``selector``, as boards and targets."""
    return encode_games(np.asarray(cells), np.array([np.asarray(cells).size]), np.array([value]), size, selector)


def read(path: Path, settings: Mapping[str, Any]) -> FileResult:
    """Decode every game of a trmph file; bad games are reported, not fatal.

    Lines are checked one by one; the moves of all games are parsed and encoded together.
    """
    size, selector = settings["board_size"], settings["position_selector"]
    games, errors = [], []
    for number, line in read_text_lines(path):
        if not line.strip() or (line.startswith("#") and not line[1:2].isdigit()):
            continue
        try:
            games.append((number, *parse_header(line, size)))
        except GameError as exc:
            errors.append(RecordError(number, exc.error, str(exc)))
    if not games and not errors:
        raise ValueError("no games in file")
    cells, lengths, bad = parse_many([moves for _, moves, _, _ in games], size)
    for index in np.flatnonzero(bad).tolist():
        number, moves = games[index][:2]
        try:
            parse_moves(moves, size)
        except GameError as exc:
            errors.append(RecordError(number, exc.error, str(exc)))
    errors.sort(key=lambda error: error.line)
    good = [game for game, is_bad in zip(games, bad.tolist(), strict=True) if not is_bad]
    if not good:
        return FileResult(empty_rows(size), 0, errors)
    values = np.array([value for _, _, value, _ in good])
    groups = np.array([group_id(key) for _, _, _, key in good], dtype=np.uint64)
    return FileResult(encode_games(cells, lengths, values, size, selector, groups), len(good), errors)


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
