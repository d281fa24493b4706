"""A realistic year of EURUSD ticks: ``python -m pipeline.synthetic.ticks OUT --rows 14000000``.

The market is open from Sunday 22:00 to Friday 22:00 UTC; weekends are closed. Tick
arrivals follow the trading sessions (busiest in the London/New York overlap, quiet
around the 22:00 rollover). The mid price is a random walk in points (1e-5) with a weak
pull towards its start; the spread is usually 0.2-1.5 pips and wider at the rollover.
Days are generated one at a time and streamed into one file per month (Exness CSV or
Parquet ``timestamp, bid, ask``), so memory holds a single day whatever the row count.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.engine.storage import atomic_path

MS_PER_DAY = 86_400_000
HOUR_WEIGHT = np.array([3, 3, 4, 4, 5, 6, 7, 10, 12, 12, 11, 10, 12, 14, 15, 15, 13, 10, 8, 7, 6, 5, 2, 3], float)
"""Relative tick intensity per UTC hour."""


def open_hours(day: np.datetime64) -> np.ndarray:
    """Hours (0-23) of ``day`` in which the market is open."""
    weekday = (int(day.astype(np.int64)) + 3) % 7  # 0 = Monday
    hours = np.arange(24)
    if weekday == 4:
        return hours[hours < 22]  # Friday: closes 22:00
    if weekday == 5:
        return hours[:0]  # Saturday: closed
    if weekday == 6:
        return hours[hours >= 22]  # Sunday: opens 22:00
    return hours


def day_weights(start: np.datetime64, days: int) -> np.ndarray:
    """Expected share of the ticks falling on each day."""
    weights = np.array([HOUR_WEIGHT[open_hours(start + d)].sum() for d in range(days)])
    return weights / weights.sum()


class TickWalk:
    """Random-walk prices in points carried from one day to the next."""

    def __init__(self, seed: int, start_price: float = 1.10):
        self.rng = np.random.default_rng(seed)
        self.anchor = int(round(start_price * 1e5))
        self.mid = float(self.anchor)

    def day(self, day: np.datetime64, count: int) -> pa.Table:
        """``count`` ticks on ``day`` (fewer if milliseconds collide), sorted, with bid and ask."""
        hours = open_hours(day)
        if not count or not len(hours):
            return _table(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
        weight = HOUR_WEIGHT[hours] / HOUR_WEIGHT[hours].sum()
        hour = self.rng.choice(hours, size=count, p=weight)
        offset = np.unique(hour * 3_600_000 + self.rng.integers(0, 3_600_000, size=count))
        n = len(offset)
        steps = self.rng.laplace(0.0, 1.4, size=n) - (self.mid - self.anchor) * 2e-6
        mid = self.mid + np.cumsum(steps)
        self.mid = float(mid[-1])
        hour_of = offset // 3_600_000
        rollover = (hour_of >= 21) & (hour_of <= 22)
        spread = np.maximum(2, np.round(self.rng.gamma(4.0, 2.0, size=n) * np.where(rollover, 4.0, 1.0)))
        bid = np.round(mid - spread / 2)
        stamps = int(day.astype("datetime64[ms]").astype(np.int64)) + offset
        return _table(stamps, np.round(bid * 1e-5, 5), np.round((bid + spread) * 1e-5, 5))


def _table(stamps: np.ndarray, bid: np.ndarray, ask: np.ndarray) -> pa.Table:
    return pa.table({"timestamp": pa.array(stamps, pa.int64()).cast(pa.timestamp("ms", "UTC")),
                     "bid": bid, "ask": ask})


def exness_csv_table(ticks: pa.Table, symbol: str = "EURUSD") -> pa.Table:
    """The Exness CSV columns of ``ticks``."""
    n = len(ticks)
    return pa.table({"Exness": pa.array(["exness"] * n), "Symbol": pa.array([symbol] * n),
                     "Timestamp": pc.strftime(ticks.column("timestamp"), format="%Y-%m-%d %H:%M:%SZ"),
                     "Bid": ticks.column("bid"), "Ask": ticks.column("ask")})


def generate(start: str, days: int, rows: int, seed: int) -> Iterator[tuple[str, pa.Table]]:
    """(month, ticks of one day) for each day, about ``rows`` ticks in all."""
    first = np.datetime64(start, "D")
    counts = np.floor(day_weights(first, days) * rows).astype(np.int64)
    counts[np.argmax(counts)] += rows - counts.sum()
    walk = TickWalk(seed)
    for d in range(days):
        day = first + d
        yield str(day.astype("datetime64[M]")), walk.day(day, int(counts[d]))


def write_ticks(out: Path, rows: int, start: str = "2024-01-01", days: int = 366, seed: int = 0,
                fmt: str = "parquet") -> list[Path]:
    """Write the ticks into ``out`` as one file per month (``ticks_2024-01.parquet`` or ``.csv``)."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for month, month_days in itertools.groupby(generate(start, days, rows, seed), key=lambda item: item[0]):
        paths.append(out / f"ticks_{month}.{fmt}")
        with atomic_path(paths[-1]) as temp:
            writer = None
            try:
                for _, table in month_days:
                    data = table if fmt == "parquet" else exness_csv_table(table)
                    writer = writer or (pq.ParquetWriter(temp, data.schema) if fmt == "parquet"
                                        else pcsv.CSVWriter(temp, data.schema))
                    writer.write_table(data)
            finally:
                if writer:
                    writer.close()
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write the monthly files into")
    parser.add_argument("--rows", type=int, default=14_000_000, help="ticks in all (about; colliding ms merge)")
    parser.add_argument("--start", default="2024-01-01", help="first day (UTC)")
    parser.add_argument("--days", type=int, default=366)
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = write_ticks(args.out, args.rows, args.start, args.days, args.seed, args.format)
    print(f"wrote {len(paths)} files to {args.out}")


if __name__ == "__main__":
    main()
