"""Benchmark of the splendor kind's reader: rows/s and games/s on one core, against upstream.

Usage: ``python benchmarks/splendor.py [--games DIR] [--repeat 3]``

Reads every ``*_games/*.csv`` under ``--games`` (default: the 240 upstream games in
``../shared/data/splendor/upstream/games``) in this one process, ``--repeat`` times, and
reports the best pass in CPU time (``time.process_time``, which other jobs on a shared
machine do not inflate) and wall time, with where the time goes (CSV parse, board checks
and labels, rules and masks, features). Upstream's per-file function
(``parallel_processor.process_single_file``) did 300 games in about 100 s with one worker:
3 games/s.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from pipeline.kinds.splendor import read, rules
from pipeline.kinds.splendor.features import features
from pipeline.kinds.splendor.labels import labels
from pipeline.kinds.splendor.masks import position
from pipeline.kinds.splendor.table import check, read_rows

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM_GAMES_PER_S = 3.0


def default_games() -> Path:
    found = [p / "shared" / "data" / "splendor" / "upstream" / "games" for p in ROOT.parents]
    return next((p for p in found if p.is_dir()), found[0])


def stages(files: list[Path]) -> dict[str, float]:
    """CPU seconds of each step of the reader over ``files``."""
    spent = dict.fromkeys(("parse CSV", "check boards, labels", "rules, masks", "features"), 0.0)
    for path in files:
        t0 = time.process_time()
        table = read_rows(path)
        t1 = time.process_time()
        check(table.values)
        labels(table.values, table.action, lambda where, message: None)
        t2 = time.process_time()
        rules.legal(position(table.values))
        t3 = time.process_time()
        features(table.values)
        t4 = time.process_time()
        for name, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            spent[name] += seconds
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=Path, default=default_games())
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    files = sorted(args.games.glob("*_games/*.csv"))
    if not files:
        raise SystemExit(f"no *_games/*.csv under {args.games}")
    read(files[0], {"masking": True})
    passes = []
    for _ in range(args.repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        rows = sum(read(path, {"masking": True}).records for path in files)
        passes.append((time.process_time() - cpu, time.perf_counter() - wall))
    cpu, wall = min(passes)
    games_per_s = len(files) / cpu
    print(f"{len(files)} games, {rows} rows: best of {args.repeat} passes {cpu:.2f} CPU-s ({wall:.2f} s wall)")
    print(f"{rows / cpu:,.0f} rows/s, {games_per_s:.1f} games/s per core; "
          f"upstream {UPSTREAM_GAMES_PER_S:.0f} games/s per worker: {games_per_s / UPSTREAM_GAMES_PER_S:.0f}x")
    spent = stages(files)
    total = sum(spent.values())
    for name, seconds in spent.items():
        print(f"  {name:<22} {seconds / len(files) * 1000:6.2f} ms/game  {seconds / total:5.1%}")
    print(f"  per row: {np.float64(total) / rows * 1e6:.0f} us")


if __name__ == "__main__":
    main()
