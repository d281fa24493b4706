"""The trmph kind on the real Hex records: boards, policy, value and player to move."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import pytest

from pipeline.kinds import trmph
from pipeline.kinds.text import NotTextError
from pipeline.synthetic.hex import write_corpus

SETTINGS = {name: setting.default for name, setting in trmph.KIND.settings.items()}
RULES = trmph.Rules()


def real_lines(shared_data: Path) -> list[tuple[str, str]]:
    return [(path.name, line) for path in sorted((shared_data / "hex").glob("*.trmph"))
            for line in path.read_text().splitlines() if line.strip()]


def naive_positions(line: str) -> list[tuple[np.ndarray, int, float, int]]:
    """A straightforward per-position reading of the format, written independently of the kind."""
    moves_part, winner = line.split()
    size_text, moves = moves_part.split("#")[1].split(",")
    size = int(size_text)
    cells, i = [], 0
    while i < len(moves):
        col = ord(moves[i]) - ord("a")
        j = i + 1
        while j < len(moves) and moves[j].isdigit():
            j += 1
        row = int(moves[i + 1:j]) - 1
        cells.append(row * size + col)
        i = j
    value = {"b": 0.0, "r": 1.0, "1": 0.0, "2": 1.0}[winner]
    positions = []
    board = np.zeros((2, size, size), dtype=np.uint8)
    for k in range(len(cells) + 1):
        policy = cells[k] if k < len(cells) else -1
        positions.append((board.copy(), policy, value, k % 2))
        if k < len(cells):
            board[k % 2, cells[k] // size, cells[k] % size] = 1
    return positions


def connects(stones: np.ndarray, axis: int) -> bool:
    """Whether ``stones`` (N x N, [row, col]) join the two edges across ``axis`` on a hex grid."""
    size = stones.shape[0]
    start = [(0, i) if axis == 0 else (i, 0) for i in range(size)]
    todo = deque(cell for cell in start if stones[cell])
    seen = set(todo)
    while todo:
        row, col = todo.popleft()
        if (row if axis == 0 else col) == size - 1:
            return True
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, 1), (1, -1)):
            nxt = (row + dr, col + dc)
            if 0 <= nxt[0] < size and 0 <= nxt[1] < size and stones[nxt] and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def test_real_games_match_a_per_position_reading(shared_data):
    lines = real_lines(shared_data)
    assert len(lines) == 9
    for name, line in lines:
        cells, value, *_ = trmph.parse_game(line, RULES)
        rows = trmph.encode_game(cells, value, 13, "all")
        expected = naive_positions(line)
        assert len(rows["X"]) == len(expected) == cells.size + 1, name
        for k, (board, policy, val, to_move) in enumerate(expected):
            assert np.array_equal(rows["X"][k], board), (name, k)
            assert rows["policy"][k] == policy and rows["value"][k] == val
            assert rows["player_to_move"][k] == to_move


def test_first_moves_of_a_real_game_by_hand(shared_data):
    """twoNetGames game 1 opens i10 f12 k4 and blue wins: checked cell by cell."""
    line = (shared_data / "hex" / "twoNetGames_sample.trmph").read_text().splitlines()[0]
    assert line.startswith("http://www.trmph.com/hex/board#13,i10f12k4")
    cells, value, *_ = trmph.parse_game(line, RULES)
    rows = trmph.encode_game(cells, value, 13, "all")
    assert list(cells[:3]) == [9 * 13 + 8, 11 * 13 + 5, 3 * 13 + 10]
    assert rows["policy"][0] == 9 * 13 + 8 and rows["policy"][1] == 11 * 13 + 5
    assert rows["X"][0].sum() == 0
    assert rows["X"][1][0, 9, 8] == 1 and rows["X"][1].sum() == 1
    assert rows["X"][2][1, 11, 5] == 1 and rows["X"][2].sum() == 2
    assert list(rows["player_to_move"][:3]) == [0, 1, 0]
    assert set(rows["value"]) == {0.0}
    assert rows["policy"][-1] == -1


def test_decoded_final_boards_show_the_recorded_winner_connected(shared_data):
    """Blue joins rows 0 and N-1, red joins columns 0 and N-1: the decoding agrees with every winner."""
    for name, line in real_lines(shared_data):
        cells, value, *_ = trmph.parse_game(line, RULES)
        board = trmph.encode_game(cells, value, 13, "final")["X"][0]
        winner = int(value)
        assert connects(board[winner].astype(bool), axis=winner), name
        assert not connects(board[1 - winner].astype(bool), axis=1 - winner), name


@pytest.mark.parametrize("selector, index", [("final", -1), ("penultimate", -2)])
def test_position_selectors_pick_one_position_per_game(shared_data, selector, index):
    path = shared_data / "hex" / "selfplay_sample.trmph"
    everything = trmph.read(path, SETTINGS)
    chosen = trmph.read(path, {**SETTINGS, "position_selector": selector})
    assert len(chosen.arrays["X"]) == chosen.records == 5
    ends = np.flatnonzero(np.diff(everything.arrays["group"], append=np.uint64(0)) != 0)
    starts = np.append(0, ends[:-1] + 1)
    picks = ends if index == -1 else ends - 1
    for name in ("X", "policy", "value", "player_to_move", "group"):
        assert np.array_equal(chosen.arrays[name], everything.arrays[name][picks])
    assert (starts < picks).all()


def test_url_and_short_forms_decode_the_same():
    short = "#5,a1b2c3 r"
    url = "http://www.trmph.com/hex/board#5,a1b2c3 2"
    rules = trmph.Rules(board_size=5)
    a, b = (trmph.encode_game(*trmph.parse_game(x, rules)[:2], 5, "all") for x in (short, url))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert trmph.parse_game(short, rules)[2] == trmph.parse_game(url, rules)[2]


@pytest.mark.parametrize("line, error, rules", [
    ("#13,a1b2z3 b", "CellOffBoard", {}),
    ("#13,a1b2a1 b", "RepeatedCell", {"repeated_moves": "reject"}),
    ("#13,a1b2c b", "IllegalCoordinate", {}),
    ("#13,a1b2!3 b", "IllegalCoordinate", {}),
    ("#13,a1b2", "MissingWinner", {}),
    ("#13,a1b2 x", "UnknownWinner", {}),
    ("#13,a1b2 B", "UnknownWinner", {}),
    ("#13,a1b2 1", "LegacyWinner", {"legacy_winners": False}),
    ("#11,a1b2 b", "BoardSizeMismatch", {}),
    ("#27,a1b2 b", "BadBoardSize", {}),
    ("#19,a1s19 b", "CellOffBoard", {"board_size_mismatch": "ignore"}),
    ("#13, b", "NoMoves", {}),
    ("a1b2 b", "BadGameRecord", {}),
    ("#x,a1b2 b", "BadGameRecord", {}),
    ("#13,a1b2 b extra", "BadGameRecord", {}),
    ("#13,a14 b", "CellOffBoard", {}),
    ("#13,a100 b", "CellOffBoard", {}),
    ("#13,a1000 b", "IllegalCoordinate", {}),
])
def test_bad_games_are_refused_with_their_reason(line, error, rules):
    with pytest.raises(trmph.GameError) as caught:
        trmph.parse_game(line, trmph.Rules(**rules))
    assert caught.value.error == error


def test_settings_follow_upstream_where_they_say_so():
    upstream = trmph.Rules(legacy_winners=False, board_size_mismatch="ignore")
    cells, value, _, warning = trmph.parse_game("#11,a1l12 r", upstream)
    assert list(cells) == [0, 11 * 13 + 11] and value == 1.0 and warning is None, "read on 13x13, N ignored"
    assert trmph.parse_game("#13,a1 2", RULES)[1] == 1.0 and trmph.parse_game("#13,a1 1", RULES)[1] == 0.0
    assert list(trmph.parse_game("#13,a01b002 b", RULES)[0]) == [0, 14], "1 to 3 digits, as upstream reads them"
    cells, _, key, warning = trmph.parse_game("#13,a1b2c3b2d4 b", RULES)
    assert list(cells) == [0, 14, 28] and warning == ("cell b2 of move 4 was played at move 2: "
                                                      "the game is cut to its first 3 moves")
    assert key == trmph.parse_game("#13,a1b2c3 r", RULES)[2], "a cut game is the game it was cut to"
    assert trmph.parse_game("#13,a1b2 r", RULES)[2] != trmph.parse_game("#13,b2a1 r", RULES)[2]


def test_a_file_with_bad_games_keeps_its_good_ones(tmp_path, shared_data):
    good = real_lines(shared_data)[0][1]
    path = tmp_path / "mixed.trmph"
    path.write_text(f"# header comment\n\n{good}\n#13,a1a1 b\n{good}\r\n#13,q99 r\n#\n  #\tcomment\n#x,a1b2 b\n")
    result = trmph.read(path, SETTINGS)
    assert result.records == 3
    assert [(e.line, e.error) for e in result.errors] == [(4, "RepeatedMove"), (6, "CellOffBoard"),
                                                          (9, "BadGameRecord")]
    moves = trmph.parse_game(good, RULES)[0].size
    assert len(result.arrays["X"]) == 2 * (moves + 1) + 2
    assert result.arrays["source_line"].tolist() == [3] * (moves + 1) + [4, 4] + [5] * (moves + 1)
    assert result.arrays["source_move"].tolist() == [*range(moves + 1), 0, 1, *range(moves + 1)]
    assert result.arrays["source_line"].dtype == result.arrays["source_move"].dtype == np.int64
    assert len(set(result.arrays["group"].tolist())) == 2, "the same game twice is one group"
    rejected = trmph.read(path, {**SETTINGS, "repeated_moves": "reject"})
    assert rejected.records == 2 and rejected.errors[0] == trmph.RecordError(
        4, "RepeatedCell", "cell a1 of move 2 was played at move 1")


def test_a_line_that_is_not_text_loses_only_itself(tmp_path, shared_data):
    good = real_lines(shared_data)[0][1].encode()
    path = tmp_path / "bytes.trmph"
    path.write_bytes(b"\xef\xbb\xbf" + good + b"\n#13,a1\x00b2 b\n" + good.replace(b"b", b"\xe9", 1) + b"\n" + good)
    result = trmph.read(path, SETTINGS)
    assert result.records == 2 and sorted(set(result.arrays["source_line"].tolist())) == [1, 4]
    assert [(e.line, e.error, e.message) for e in result.errors] == [
        (2, "NotTextError", "line is not text: NUL byte at column 7"),
        (3, "NotTextError", f"line is not text: byte 0xe9 at column {good.index(b'b') + 1} is not UTF-8")]
    binary = tmp_path / "binary.trmph"
    binary.write_bytes(b"\n".join([b"\x00\x01", b"", b"  ", b"\xff\xfe", good]))
    with pytest.raises(NotTextError, match="^binary or not UTF-8: 2 of 3 lines are not text; line 1: NUL byte at"):
        trmph.read(binary, SETTINGS)


def test_generated_games_are_complete_and_won_by_the_recorded_side(tmp_path):
    paths = write_corpus(tmp_path, files=2, games=5, size=7, seed=1)
    for path in paths:
        for line in path.read_text().splitlines():
            cells, value, *_ = trmph.parse_game(line, trmph.Rules(board_size=7))
            board = trmph.encode_game(cells, value, 7, "final")["X"][0]
            winner = int(value)
            assert connects(board[winner].astype(bool), axis=winner)
            before = trmph.encode_game(cells, value, 7, "penultimate")["X"][0]
            assert not connects(before[winner].astype(bool), axis=winner), "the game ends when it is won"


@pytest.mark.parametrize("selector", trmph.SELECTORS)
@pytest.mark.parametrize("repeated", ["truncate", "reject"])
def test_reading_a_file_at_once_equals_reading_its_games_one_by_one(tmp_path, selector, repeated):
    """read() parses and encodes all games together; each game alone must give the same rows and errors."""
    lines = [line for path in write_corpus(tmp_path / "in", files=1, games=12, size=7, seed=9)
             for line in path.read_text().splitlines()]
    lines[2] = lines[2].replace(",", ",01", 1)  # starts with a digit
    lines[5] = lines[5].split()[0] + "a1a1 b"  # cell played twice (or off board)
    lines[6] = lines[6].split()[0] + lines[6].split()[0].split(",")[1][:2] + " r"  # its first move again
    lines[7] = lines[7][:9] + "é" + lines[7][10:]  # not a coordinate
    lines[9] = "#7,a1b2 x"  # unknown winner
    path = tmp_path / "mixed.trmph"
    path.write_text("\n".join(lines) + "\n")
    settings = {**SETTINGS, "board_size": 7, "position_selector": selector, "repeated_moves": repeated}
    rules = trmph.Rules.of(settings)
    result = trmph.read(path, settings)
    expected, errors = [], []
    for number, line in enumerate(lines, start=1):
        try:
            cells, value, key, warning = trmph.parse_game(line, rules)
        except trmph.GameError as exc:
            errors.append((number, exc.error, str(exc)))
            continue
        if warning:
            errors.append((number, "RepeatedMove", warning))
        rows = trmph.encode_game(cells, value, 7, selector)
        expected.append({**rows, "group": np.full(len(rows["X"]), trmph.group_id(key), dtype=np.uint64),
                         "source_line": np.full(len(rows["X"]), number, dtype=np.int64)})
    assert [(e.line, e.error, e.message) for e in result.errors] == errors and len(errors) == 5
    assert result.records == len(expected) == (7 if repeated == "reject" else 9)
    assert sorted(result.arrays) == sorted(expected[0])
    for name, array in result.arrays.items():
        want = np.concatenate([rows[name] for rows in expected])
        assert array.dtype == want.dtype and np.array_equal(array, want), name


def test_a_file_of_only_bad_games_gives_typed_empty_rows(tmp_path):
    (tmp_path / "bad.trmph").write_text("#13,a1b2 x\n")
    (tmp_path / "good.trmph").write_text("#13,a1 b\n")
    result, full = (trmph.read(tmp_path / name, SETTINGS) for name in ("bad.trmph", "good.trmph"))
    assert result.records == 0 and len(result.errors) == 1
    assert {k: (v.dtype, v.shape[1:]) for k, v in result.arrays.items()} == {
        k: (v.dtype, v.shape[1:]) for k, v in full.arrays.items()}
    assert all(len(v) == 0 for v in result.arrays.values())
