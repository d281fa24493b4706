"""Random complete Hex games in trmph notation: ``python -m pipeline.synthetic.hex OUT --files N``.

Moves are uniformly random empty cells until one side connects its edges (blue: top to
bottom rows, red: left to right columns, as in the real records), so every game is a
legal, finished game with a true winner.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, 1), (1, -1))


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def random_game(size: int, rng: np.random.Generator) -> tuple[list[int], str]:
    """Cells played and the winner ('b' or 'r') of one random complete game."""
    cells = size * size
    low, high = cells, cells + 1  # virtual edge nodes: blue's top/bottom, red's left/right
    parent = {0: list(range(cells + 2)), 1: list(range(cells + 2))}
    owner = np.full(cells, -1)
    moves = []
    for move, cell in enumerate(rng.permutation(cells)):
        colour = move % 2
        owner[cell] = colour
        moves.append(int(cell))
        row, col = divmod(int(cell), size)
        links = [nr * size + nc for dr, dc in NEIGHBOURS
                 if 0 <= (nr := row + dr) < size and 0 <= (nc := col + dc) < size and owner[nr * size + nc] == colour]
        position = row if colour == 0 else col
        links += [low] if position == 0 else []
        links += [high] if position == size - 1 else []
        tree = parent[colour]
        for other in links:
            tree[_find(tree, other)] = _find(tree, int(cell))
        if _find(tree, low) == _find(tree, high):
            return moves, "br"[colour]
    raise AssertionError("a full Hex board always has a winner")


def game_line(moves: list[int], winner: str, size: int, url: bool) -> str:
    """A trmph line for ``moves``: ``#13,a1b2... b`` or the full URL form."""
    text = "".join(f"{chr(97 + cell % size)}{cell // size + 1}" for cell in moves)
    prefix = "http://www.trmph.com/hex/board" if url else ""
    return f"{prefix}#{size},{text} {winner}"


def write_corpus(out: Path, files: int, games: int, size: int = 13, seed: int = 0) -> list[Path]:
    """Write ``files`` trmph files of ``games`` random games each into ``out``."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(files):
        lines = [game_line(*random_game(size, rng), size, url=bool(rng.integers(2))) for _ in range(games)]
        path = out / f"games_{index:06d}.trmph"
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write the files into")
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--games", type=int, default=10, help="games per file")
    parser.add_argument("--size", type=int, default=13, help="board size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = write_corpus(args.out, args.files, args.games, args.size, args.seed)
    print(f"wrote {len(paths)} files to {args.out}")


if __name__ == "__main__":
    main()
