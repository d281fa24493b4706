"""The trmph encoder against a straightforward per-position Python version of the same encoding."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pipeline.kinds import trmph
from pipeline.synthetic.hex import game_line, random_game

WINNER = {"b": 0.0, "1": 0.0, "r": 1.0, "2": 1.0}


def naive_read(path: Path, size: int) -> dict[str, np.ndarray]:
    """Per-position Python: parse each move by hand, copy the board once per position.

    A loop over moves that records the current board, then places the stone: the
    straightforward encoding the benchmark issue compares against.
    """
    boards, policies, values, players, groups = [], [], [], [], []
    for line in path.read_text().splitlines():
        if not line.strip() or (line.startswith("#") and not line[1:2].isdigit()):
            continue
        record, winner = line.split()
        moves = record.rpartition("#")[2].partition(",")[2]
        cells, i = [], 0
        while i < len(moves):
            j = i + 1
            while j < len(moves) and moves[j].isdigit():
                j += 1
            cells.append((int(moves[i + 1:j]) - 1) * size + ord(moves[i]) - ord("a"))
            i = j
        group = trmph.group_id(trmph.game_key(np.array(cells), size))
        board = np.zeros((2, size, size), dtype=np.uint8)
        for move in range(len(cells) + 1):
            boards.append(board.copy())
            policies.append(cells[move] if move < len(cells) else -1)
            values.append(WINNER[winner])
            players.append(move % 2)
            groups.append(group)
            if move < len(cells):
                board[move % 2, cells[move] // size, cells[move] % size] = 1
    return {"X": np.array(boards), "policy": np.array(policies, dtype=np.int16),
            "value": np.array(values, dtype=np.float32), "player_to_move": np.array(players, dtype=np.uint8),
            "group": np.array(groups, dtype=np.uint64)}


def write_games(path: Path, games: int, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(game_line(*random_game(size, rng), size, url=False) + "\n" for _ in range(games)))


def _median_cpu(function, repeats: int) -> tuple[float, dict]:
    """Median CPU seconds of ``function()`` (one core; steady on a shared machine) after one warm-up call."""
    times, result = [], function()
    for _ in range(repeats):
        started = time.process_time()
        result = function()
        times.append(time.process_time() - started)
    return float(np.median(times)), result


def compare(scratch: Path, games: int, size: int = 13, repeats: int = 3) -> dict:
    """Positions per second (one core) of ``trmph.read`` and of :func:`naive_read` on the same games.

    Also the output floor: allocating and filling the boards array alone (``np.ones``),
    the most any encoder producing that array could reach on this machine.
    """
    path = scratch / "encoder" / f"games-{games}-{size}.trmph"
    if not path.exists():
        write_games(path, games, size, seed=1)
    settings = {"board_size": size, "position_selector": "all"}
    fast_s, fast = _median_cpu(lambda: trmph.read(path, settings).arrays, repeats)
    naive_s, naive = _median_cpu(lambda: naive_read(path, size), repeats)
    for name, array in naive.items():
        if not np.array_equal(fast[name], array) or fast[name].dtype != array.dtype:
            raise AssertionError(f"the naive encoder disagrees with trmph.read on {name!r}")
    positions = len(fast["X"])
    floor_s, _ = _median_cpu(lambda: {"X": np.ones(fast["X"].shape, dtype=np.uint8)}, repeats)
    return {"games": games, "board_size": size, "positions": positions,
            "vectorised_positions_per_s": positions / fast_s, "naive_positions_per_s": positions / naive_s,
            "speedup": naive_s / fast_s, "output_floor_positions_per_s": positions / floor_s,
            "speedup_ceiling": naive_s / floor_s}
