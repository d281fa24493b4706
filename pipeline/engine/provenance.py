"""Row provenance: which input file (and, from the kind, which line or row) every row of ``final/`` came from.

A batch record lists its files with rows and their row counts in row order
(``file_rows``); the merged manifest concatenates them, so row ``i`` of the dataset is
from the file whose cumulative count first exceeds ``i``. The split writes
``final/rows_{split}.parquet``: column ``file`` (the relative path, dictionary-encoded),
then one column ``<x>`` per provenance array ``source_<x>`` the kind emits, one row per X row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from pipeline.engine.layout import SPLITS, Layout
from pipeline.engine.storage import atomic_open
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    import pyarrow as pa

SOURCE_PREFIX = "source_"
"""Arrays named ``source_<x>`` are provenance (where a row came from), never labels."""
FILE_COLUMN = "file"


def file_rows(relatives: Sequence[str], rows: Sequence[int]) -> list[list]:
    """``[relative path, rows]`` of each file that gave rows, in row order (for a batch record)."""
    return [[relative, int(count)] for relative, count in zip(relatives, rows, strict=True) if count]


def file_index(counts: np.ndarray, start: int, stop: int) -> np.ndarray:
    """The index (into the file list) of the file of each row in ``[start, stop)``, from per-file row counts."""
    bounds = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
    first = int(np.searchsorted(bounds, start, side="right")) - 1
    last = int(np.searchsorted(bounds, stop - 1, side="right")) - 1
    spans = np.minimum(bounds[first + 1:last + 2], stop) - np.maximum(bounds[first:last + 1], start)
    return np.repeat(np.arange(first, last + 1), spans)


def _arrow(values: np.ndarray) -> pa.Array:
    """A numpy column as an Arrow array, from its buffer: ``pa.array`` would import pandas (0.3-0.5 s) to
    check whether ``values`` is a pandas object."""
    import pyarrow as pa  # see write_provenance
    values = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("="))
    if values.dtype.kind in "iuf":
        return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])
    if values.dtype.kind == "b":
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])
    return pa.array(values)


def _strings(texts: list[str]) -> pa.StringArray:
    """A list of strings as an Arrow array, from its buffers (see :func:`_arrow`)."""
    import pyarrow as pa  # see write_provenance
    encoded = [text.encode() for text in texts]
    offsets = np.concatenate([[0], np.cumsum([len(e) for e in encoded], dtype=np.int64)]).astype(np.int32)
    return pa.StringArray.from_buffers(len(texts), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded)))


def _file_column(files: list[str], index: np.ndarray) -> pa.DictionaryArray:
    """The ``file`` column of some rows: a dictionary of only the files they use."""
    import pyarrow as pa  # see write_provenance
    used, codes = np.unique(index, return_inverse=True)
    return pa.DictionaryArray.from_arrays(_arrow(codes.astype(np.int32)), _strings([files[i] for i in used]))


def write_provenance(layout: Layout, manifest: dict, assign: Callable[[np.ndarray], np.ndarray],
                     rows: Callable[[str, int], Iterable[np.ndarray]], chunk_rows: int) -> list[str]:
    """Write ``rows_{split}.parquet`` for every split; return their names.

    ``assign`` gives the split index of each row from its group id; ``rows(name, size)``
    streams an array of the dataset in row order. Memory holds one chunk of ``chunk_rows``
    rows of the group and provenance arrays at a time.
    """
    import pyarrow as pa  # here, not at the top: ``import pipeline`` stays light for runs that never split
    import pyarrow.parquet as pq

    sources = sorted(name for name in manifest["arrays"] if name.startswith(SOURCE_PREFIX))
    columns = [name.removeprefix(SOURCE_PREFIX) for name in sources]
    if FILE_COLUMN in columns:
        raise PipelineError(f"the kind emits {SOURCE_PREFIX}{FILE_COLUMN}, which would hide the engine's "
                            f"{FILE_COLUMN} column of rows_{{split}}.parquet; rename it")
    files = [relative for relative, _ in manifest["file_rows"]]
    counts = np.array([count for _, count in manifest["file_rows"]], dtype=np.int64)
    schema = pa.schema([(FILE_COLUMN, pa.dictionary(pa.int32(), pa.string()))]
                       + [(column, pa.from_numpy_dtype(np.dtype(manifest["arrays"][name]["dtype"])))
                          for column, name in zip(columns, sources, strict=True)])
    paths = [layout.final / f"rows_{split}.parquet" for split in SPLITS]
    streams = [rows(name, chunk_rows) for name in ("group", *sources)]
    with contextlib.ExitStack() as stack:
        writers = [pq.ParquetWriter(stack.enter_context(atomic_open(path)), schema) for path in paths]
        for writer in writers:  # closed (footer written) before its file is renamed into place
            stack.callback(writer.close)
        start = 0
        for groups, *values in zip(*streams, strict=True):
            stop = start + len(groups)
            where, index = assign(groups), file_index(counts, start, stop)
            for split, writer in enumerate(writers):
                chosen = where == split
                if chosen.any():
                    arrays = [_file_column(files, index[chosen]), *(_arrow(v[chosen]) for v in values)]
                    writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            start = stop
    return [path.name for path in paths]
