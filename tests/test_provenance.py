"""Row provenance (engine/provenance.py): every row of final/ leads back to its file and the kind's source arrays."""

from __future__ import annotations

import luigi
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from conftest import hex_recipe

from pipeline.engine.plan import forget_plans
from pipeline.engine.provenance import _arrow, _strings, file_index
from pipeline.kinds import trmph
from pipeline.recipe import load_recipe
from pipeline.tasks import SplitDataset

SPLITS = ("train", "val", "test")


def test_file_index_of_any_chunk_matches_the_whole_repeat():
    counts = np.array([3, 1, 4, 2], dtype=np.int64)
    whole = np.repeat(np.arange(len(counts)), counts)
    for start in range(len(whole)):
        for stop in range(start + 1, len(whole) + 1):
            np.testing.assert_array_equal(file_index(counts, start, stop), whole[start:stop], f"{start}:{stop}")


def test_columns_built_from_their_buffers_equal_what_pyarrow_makes_of_them():
    columns = [np.array([3, -1, 2**40], dtype=np.int64), np.array([1, 2, 3], dtype=">i4"),
               np.array([0.5, 1e30, -2.0], dtype=np.float32), np.array([True, False, True] * 5),
               np.arange(10, dtype=np.uint16)[::3], np.array(["a", "bc"])]
    for values in columns:
        assert _arrow(values).equals(pa.array(values.astype(values.dtype.newbyteorder("=")))), values.dtype
    texts = ["games_000001.trmph", "", "sub/ünï.trmph"]
    assert _strings(texts).equals(pa.array(texts, type=pa.string()))


def test_trmph_rows_name_their_file_line_and_move(tmp_path, shared_data):
    recipe = hex_recipe(tmp_path, shared_data / "hex", batch={"files_per_batch": 1})
    forget_plans()
    assert luigi.build([SplitDataset(recipe=str(recipe))], local_scheduler=True, workers=1, log_level="WARNING")
    final = tmp_path / "out-hex" / "final"
    settings = load_recipe(recipe).kind_settings
    readings = {path.name: trmph.read(path, settings) for path in (shared_data / "hex").glob("*.trmph")}
    seen = 0
    for split in SPLITS:
        rows = pq.read_table(final / f"rows_{split}.parquet").to_pydict()
        assert list(rows) == ["file", "line", "move"]
        x = np.load(final / f"X_{split}.npy")
        assert len(rows["file"]) == len(x)
        for at, (file, line, move) in enumerate(zip(rows["file"], rows["line"], rows["move"], strict=True)):
            arrays = readings[file].arrays
            source = np.flatnonzero((arrays["source_line"] == line) & (arrays["source_move"] == move))
            assert len(source) == 1 and (arrays["X"][source[0]] == x[at]).all(), (split, at)
        seen += len(x)
    assert seen == sum(len(reading.arrays["X"]) for reading in readings.values())
