"""Hex game records in trmph notation (one game per line) → boards, policy, value.

A game line is ``<moves> <winner>``: ``<moves>`` is ``http://www.trmph.com/hex/board#13,a1b2...``
or ``#13,a1b2...`` (the first ``#N,`` gives the board size; the moves follow it); a move
is a column letter (``a`` = column 0) and a row number (``1`` = row 0), cell =
``row * N + col``; blue moves first and colours alternate. The winner is ``b``/``r``
(legacy ``1``/``2`` when ``legacy_winners``). A blank line (only whitespace) and a comment
line (``#`` followed by whitespace or nothing, after leading whitespace) are not records;
every other line is a game, recorded as a bad record when it is not a valid one.

A game of k moves gives k + 1 positions (after 0..k moves). Per position: the board
``uint8[2, N, N]`` (channel 0 blue, 1 red), ``policy`` = the next move's cell (-1 after
the last move), ``value`` = 0.0 if blue won else 1.0, ``player_to_move`` = 0 (blue) on
even move counts, and its provenance ``source_line`` (1-based line) and ``source_move``
(moves played). The group is the game's decoded moves, so duplicates share one group.
The rules follow upstream hex_ai (niallc/Snowflake2025) where the settings say so; see
docs/recipes.md for every difference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.kinds.base import FileResult, Kind, RecordError, Setting, group_id
from pipeline.kinds.text import text_lines

WINNERS = {"b": 0.0, "r": 1.0}
LEGACY_WINNERS = {"1": "b", "2": "r"}
SELECTORS = ("all", "final", "penultimate")
PREAMBLE = re.compile(r"#(\d+),")
MAX_FILE_BYTES = 16 << 20


class GameError(ValueError):
    """A game line that cannot be decoded; the class name of the reason is its ``error``."""

    def __init__(self, error: str, message: str):
        super().__init__(message)
        self.error = error


@dataclass(frozen=True)
class Rules:
    """How game lines are read: the recipe's trmph settings (the defaults are the kind's)."""

    board_size: int = 13
    repeated_moves: str = "truncate"
    """``truncate``: cut the game before its first repeated cell (upstream); ``reject``: a bad record."""
    legacy_winners: bool = True
    board_size_mismatch: str = "reject"
    """``reject``: a ``#N,`` other than board_size is a bad record; ``ignore``: N is not read (upstream)."""

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> Rules:
        """The rules of a ``[process]`` table; a key left out (a direct call) keeps its default."""
        return cls(**{f.name: settings[f.name] for f in fields(cls) if f.name in settings})


def is_comment(text: str) -> bool:
    """Whether a stripped, non-blank line is a comment: ``#`` then whitespace or nothing."""
    return text[0] == "#" and (len(text) == 1 or text[1].isspace())


def cell_name(cell: int, size: int) -> str:
    return f"{chr(cell % size + 97)}{cell // size + 1}"


def _numbers(raw: np.ndarray, starts: np.ndarray, digits: np.ndarray) -> np.ndarray:
    """The row number of each move token: its 1 to 3 digits after the letter (any other count is caught)."""
    padded = np.append(raw, np.zeros(3, dtype=np.uint8)).astype(np.int32) - ord("0")
    number = padded[starts + 1]
    for k in (2, 3):
        number = np.where(digits >= k, number * 10 + padded[starts + k], number)
    return number


def parse_moves(moves: str, rules: Rules) -> tuple[np.ndarray, str | None]:
    """Cells (``row * size + col``) of a move string such as ``a1b12``, and a warning if it was cut.

    A move is a letter and 1 to 3 digits (``a01`` is ``a1``, as upstream reads it). With
    ``repeated_moves = "truncate"`` the game ends before its first repeated cell and the
    warning says where; with ``"reject"`` a repeat is a ``RepeatedCell`` error.
    """
    size = rules.board_size
    raw = np.frombuffer(moves.encode("ascii", "replace"), dtype=np.uint8)
    is_letter = (raw >= ord("a")) & (raw <= ord("z"))
    is_digit = (raw >= ord("0")) & (raw <= ord("9"))
    if not raw.size or not is_letter[0] or not (is_letter | is_digit).all():
        raise GameError("IllegalCoordinate", f"move string {moves[:40]!r} is not letter+number moves")
    starts = np.flatnonzero(is_letter)
    digits = np.diff(np.append(starts, raw.size)) - 1
    if ((digits < 1) | (digits > 3)).any():
        bad = int(np.flatnonzero((digits < 1) | (digits > 3))[0])
        end = starts[bad + 1] if bad + 1 < starts.size else raw.size
        raise GameError("IllegalCoordinate", f"illegal coordinate {moves[starts[bad]:end]!r}")
    cols = raw[starts].astype(np.int32) - ord("a")
    rows = _numbers(raw, starts, digits) - 1
    off = (cols >= size) | (rows < 0) | (rows >= size)
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise GameError("CellOffBoard", f"move {i + 1} ({chr(cols[i] + 97)}{rows[i] + 1}) is off a {size}x{size} board")
    cells = rows * size + cols
    first = np.zeros(cells.size, dtype=bool)
    first[np.unique(cells, return_index=True)[1]] = True
    if first.all():
        return cells, None
    at = int(np.flatnonzero(~first)[0])
    earlier = int(np.flatnonzero(cells == cells[at])[0])
    where = f"cell {cell_name(int(cells[at]), size)} of move {at + 1} was played at move {earlier + 1}"
    if rules.repeated_moves == "reject":
        raise GameError("RepeatedCell", where)
    return cells[:at], f"{where}: the game is cut to its first {at} moves"


def parse_header(line: str, rules: Rules) -> tuple[str, float]:
    """Move string and winner value of one game line; the moves are not checked yet."""
    parts = line.split()
    if len(parts) != 2:
        raise GameError("MissingWinner" if len(parts) == 1 else "BadGameRecord",
                        f"expected '<moves> <winner>', got {len(parts)} fields")
    record, winner = parts
    if winner in LEGACY_WINNERS and rules.legacy_winners:
        winner = LEGACY_WINNERS[winner]
    elif winner in LEGACY_WINNERS:
        raise GameError("LegacyWinner", f"winner {winner!r} is the legacy form of {LEGACY_WINNERS[winner]!r}, "
                                        "refused as legacy_winners = false")
    if winner not in WINNERS:
        raise GameError("UnknownWinner", f"winner {winner!r} is not b or r (or legacy 1, 2)")
    preamble = PREAMBLE.search(record)
    if not preamble:
        raise GameError("BadGameRecord", f"{record[:40]!r} has no '#N,' board size")
    if rules.board_size_mismatch == "reject":
        size = int(preamble[1])
        if not 1 <= size <= 26:
            raise GameError("BadBoardSize", f"board size {size} is outside 1-26")
        if size != rules.board_size:
            raise GameError("BoardSizeMismatch",
                            f"board size {size} differs from the recipe's board_size {rules.board_size}")
    moves = record[preamble.end():]
    if not moves:
        raise GameError("NoMoves", "the game has no moves")
    return moves, WINNERS[winner]


def game_key(cells: np.ndarray, size: int) -> str:
    """The group key of a game: its board size and decoded moves."""
    return f"{size}:{np.asarray(cells, dtype='<i2').tobytes().hex()}"


def parse_game(line: str, rules: Rules) -> tuple[np.ndarray, float, str, str | None]:
    """Cells, winner value, group key and truncation warning (or None) of one game line."""
    moves, value = parse_header(line, rules)
    cells, warning = parse_moves(moves, rules)
    return cells, value, game_key(cells, rules.board_size), warning


def parse_many(moves: list[str], rules: Rules) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cells of many non-empty move strings in one vectorised pass, as :func:`parse_moves` reads each.

    Returns the (kept) cells of the good games concatenated, the move count of each good
    game, a mask of the bad games and a mask of the games cut at a repeated cell (for
    both, :func:`parse_moves` on that game names the reason).
    """
    size = rules.board_size
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
    rows = _numbers(raw, starts, digits) - 1
    valid = (digits >= 1) & (digits <= 3) & (cols >= 0) & (cols < size) & (rows >= 0) & (rows < size)
    bad[game[~valid]] = True
    cells = rows * size + cols
    checked = np.flatnonzero(~bad[game])
    places = game[checked] * (size * size) + cells[checked]
    first = np.full(len(moves) * size * size, checked.size)
    np.minimum.at(first, places, np.arange(checked.size))  # the first move on each cell of each game
    repeats = checked[first[places] != np.arange(checked.size)]  # token indices, in order
    cut_games, at = np.unique(game[repeats], return_index=True)
    cut = np.full(len(moves), starts.size)
    cut[cut_games] = repeats[at]
    truncated = np.zeros(len(moves), dtype=bool)
    if rules.repeated_moves == "reject":
        bad[cut_games] = True
    else:
        truncated[cut_games] = True
    keep = ~bad[game] & (np.arange(starts.size) < cut[game])
    return cells[keep], np.bincount(game[keep], minlength=len(moves))[~bad], bad, truncated


def encode_games(cells: np.ndarray, lengths: np.ndarray, values: np.ndarray, size: int, selector: str,
                 per_game: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Positions chosen by ``selector`` of games given as concatenated ``cells`` and move counts.

    ``values`` and each array of ``per_game`` (e.g. ``group``) hold one entry per game.

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
        "source_move": position.astype(np.int64),
    }
    return rows | {name: np.asarray(array)[game_of] for name, array in (per_game or {}).items()}


def encode_game(cells: np.ndarray, value: float, size: int, selector: str) -> dict[str, np.ndarray]:
    """Positions of one game chosen by ``selector``, as boards and targets."""
    return encode_games(np.asarray(cells), np.array([np.asarray(cells).size]), np.array([value]), size, selector)


def read(path: Path, settings: Mapping[str, Any]) -> FileResult:
    """Decode every game of a trmph file; a bad line loses only itself.

    Lines are checked one by one; the moves of all games are parsed and encoded together.
    A game cut at a repeated cell keeps its rows and is recorded as ``RepeatedMove``.
    """
    rules = Rules.of(settings)
    size = rules.board_size
    lines, errors = text_lines(path.read_bytes())
    games = []
    for number, line in lines:
        text = line.strip()
        if not text or is_comment(text):
            continue
        try:
            games.append((number, *parse_header(text, rules)))
        except GameError as exc:
            errors.append(RecordError(number, exc.error, str(exc)))
    if not games and not errors:
        raise ValueError("no games in file")
    cells, lengths, bad, truncated = parse_many([moves for _, moves, _ in games], rules)
    for index in np.flatnonzero(bad | truncated).tolist():
        number, moves, _ = games[index]
        try:
            errors.append(RecordError(number, "RepeatedMove", parse_moves(moves, rules)[1], warning=True))
        except GameError as exc:
            errors.append(RecordError(number, exc.error, str(exc)))
    errors.sort(key=lambda error: error.line)
    good = [game for game, is_bad in zip(games, bad.tolist(), strict=True) if not is_bad]
    starts = (np.cumsum(lengths) - lengths).tolist()
    per_game = {
        "group": np.array([group_id(game_key(cells[start:start + n], size))
                           for start, n in zip(starts, lengths.tolist(), strict=True)], dtype=np.uint64),
        "source_line": np.array([number for number, _, _ in good], dtype=np.int64),
    }
    values = np.array([value for _, _, value in good], dtype=np.float32)
    return FileResult(encode_games(cells, lengths, values, size, settings["position_selector"], per_game),
                      len(good), errors)


KIND = Kind(
    name="trmph",
    version="2",
    read=read,
    settings={
        "position_selector": Setting(str, "all", SELECTORS, "which positions of each game become rows"),
        "board_size": Setting(int, Rules.board_size, help="board size N of every game (1-26)",
                              check=lambda n: None if 1 <= n <= 26 else "must be between 1 and 26"),
        "repeated_moves": Setting(str, Rules.repeated_moves, ("truncate", "reject"),
                                  "a game playing a cell twice: truncate (cut before the repeat, as upstream) or "
                                  "reject (a bad record)"),
        "legacy_winners": Setting(bool, Rules.legacy_winners,
                                  help="accept the legacy winners 1 (= b) and 2 (= r); upstream refuses them"),
        "board_size_mismatch": Setting(str, Rules.board_size_mismatch, ("reject", "ignore"),
                                       "a '#N,' other than board_size: reject (a bad record) or ignore (read the "
                                       "game on board_size, as upstream does)"),
    },
    max_file_bytes=MAX_FILE_BYTES,
)
