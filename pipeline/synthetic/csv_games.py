"""Random Splendor-shaped game logs: ``python -m pipeline.synthetic.csv_games OUT --files N``.

Same layout and header as the real logs: ``{2,3,4}_games/<id>.csv`` (ids repeat across
the folders), one row per turn, 403 columns. Seats, nobles, card slots and reservations
that do not exist are empty (or the literal ``nan`` with ``--missing nan``); the label
columns follow the action type as in the real files (card_selection only when building,
gem_take3 only when taking three gems, ...). Values are random, not legal play.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

COLOURS = ("white", "blue", "green", "red", "black")
CARD = ("vp", "level", *(f"cost_{c}" for c in COLOURS), *(f"bonus_{c}" for c in COLOURS))
ACTIONS = ("build", "reserve", "take 2 tokens", "take 3 tokens")
ACTION_ODDS = (0.45, 0.02, 0.08, 0.45)


def header() -> list[str]:
    """The 403 column names of a real game log, in order."""
    gems = [*COLOURS, "gold"]
    names = ["game_id", "num_players", "turn_number", "current_player", *(f"gems_board_{c}" for c in gems)]
    names += [f"card{i}_{f}" for i in range(12) for f in CARD]
    names += [f"deck_level{i}_remaining" for i in (1, 2, 3)]
    names += [f"noble{i}_{f}" for i in range(5) for f in ("vp", *(f"req_{c}" for c in COLOURS))]
    for p in range(4):
        names += [f"player{p}_position", f"player{p}_vp", *(f"player{p}_gems_{c}" for c in gems)]
        names += [f"player{p}_reduction_{c}" for c in COLOURS]
        names += [f"player{p}_reserved{r}_{f}" for r in range(3) for f in CARD]
    names += ["action_type", "card_selection", "card_reservation", *(f"gem_take3_{c}" for c in COLOURS)]
    names += [*(f"gem_take2_{c}" for c in COLOURS), "noble_selection", *(f"gems_removed_{c}" for c in gems)]
    return names


def _cards(rng: np.random.Generator, rows: int, slots: int, present: np.ndarray) -> np.ndarray:
    """``slots`` cards per row (12 values each); absent slots are NaN."""
    cards = np.empty((rows, slots, len(CARD)))
    cards[:, :, 0] = rng.integers(0, 6, (rows, slots))
    cards[:, :, 1] = rng.integers(1, 4, (rows, slots))
    cards[:, :, 2:7] = rng.integers(0, 8, (rows, slots, 5))
    cards[:, :, 7:] = np.eye(5)[rng.integers(0, 5, (rows, slots))]
    cards[~present] = np.nan
    return cards.reshape(rows, -1)


def random_game(game_id: int, players: int, rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The numeric columns (NaN = missing) and the action_type texts of one game."""
    turn = np.arange(rows)
    parts = [np.full(rows, game_id), np.full(rows, players), turn // players + 1, turn % players,
             rng.integers(0, 8, (rows, 6))]
    parts.append(_cards(rng, rows, 12, rng.random((rows, 12)) > 0.03))
    parts.append(np.maximum(0, np.array([40, 30, 20]) - turn[:, None] // 3))
    nobles = np.full((rows, 5, 6), 3.0)
    nobles[:, :, 1:] = rng.integers(0, 5, (rows, 5, 5))
    nobles[:, players + 1:] = np.nan
    parts.append(nobles.reshape(rows, -1))
    for seat in range(4):
        state = np.column_stack([np.full(rows, seat), rng.integers(0, 16, rows), rng.integers(0, 8, (rows, 11))])
        reserved = _cards(rng, rows, 3, rng.random((rows, 3)) < 0.15)
        seat_columns = np.column_stack([state, reserved])
        parts.append(np.full_like(seat_columns, np.nan) if seat >= players else seat_columns)
    action = rng.choice(len(ACTIONS), rows, p=ACTION_ODDS)
    labels = np.full((rows, 19), np.nan)
    build, reserve, take2, take3 = (action == i for i in range(4))
    labels[build, 0] = rng.integers(0, 15, build.sum())
    labels[reserve, 1] = rng.integers(0, 15, reserve.sum())
    three = np.argsort(rng.random((take3.sum(), 5)), axis=1) < 3
    labels[take3, 2:7] = three
    labels[take2, 7:12] = np.eye(5)[rng.integers(0, 5, take2.sum())] * 2
    labels[:, 12] = np.where(rng.random(rows) < 0.05, rng.integers(0, 5, rows), -1)
    labels[:, 13:] = (rng.random((rows, 6)) < 0.03) * rng.integers(1, 3, (rows, 6))
    return np.column_stack([*parts, labels]).astype(np.float64), np.array(ACTIONS)[action]


def write_game(path: Path, values: np.ndarray, actions: np.ndarray, missing: str) -> None:
    """One game as CSV with the real header; NaN written as ``missing``."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = header()
    split = names.index("action_type")
    numbers = [pa.array(values[:, i], from_pandas=True) for i in range(values.shape[1])]
    columns = [*numbers[:split], pa.array(actions), *numbers[split:]]
    options = pacsv.WriteOptions(quoting_style="none", quoting_header="none", null_string=missing)
    pacsv.write_csv(pa.table(columns, names=names), path, options)


def write_corpus(out: Path, files: int, rows: float = 75.0, seed: int = 0, missing: str = "") -> list[Path]:
    """Write ``files`` games spread over ``{2,3,4}_games/`` below ``out``, ~``rows`` turns each."""
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(files):
        players = 2 + index % 3
        folder = out / f"{players}_games"
        folder.mkdir(parents=True, exist_ok=True)
        game_id = index // 3 + 1
        turns = int(np.clip(rng.normal(rows, rows / 5), rows / 3, rows * 2))
        values, actions = random_game(game_id, players, turns, rng)
        path = folder / f"{game_id}.csv"
        write_game(path, values, actions, missing)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write {2,3,4}_games/ into")
    parser.add_argument("--files", type=int, default=7259, help="games (one file each); the real set has 7,259")
    parser.add_argument("--rows", type=float, default=75.0, help="mean turns per game")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--missing", default="", help="text of a missing field: '' (default) or 'nan'")
    args = parser.parse_args()
    paths = write_corpus(args.out, args.files, args.rows, args.seed, args.missing)
    print(f"wrote {len(paths)} files to {args.out}")


if __name__ == "__main__":
    main()
