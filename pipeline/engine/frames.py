"""The batch file: one frame per input file, appended as the batch goes, then an index.

A batch file (``intermediate/batch_NNNN.frames``) is written under ``.partial`` while its
batch runs, one frame per processed input file, so a crash leaves a readable prefix: the
next run keeps the valid frames, cuts a torn tail and goes on. When every file has its
frame, an index frame is appended and the file is renamed into place.

A frame is a 20-byte header — ``PLF1``, the length of its meta (uint32), the length of its
payload (uint64), the CRC-32 of meta and payload (uint32), all little-endian — then the
meta (JSON: the input file, its fingerprint, counts, failures, metadata, and each array's
``[offset in the payload, bytes, dtype, row shape, codec]``), then the payload: each array's
raw C-order bytes, compressed by its codec: ``zstd`` (level 1, read with pyarrow),
``deflate`` (zlib level 1) or ``none`` (arrays under 4 KiB are never compressed).

The index frame's meta has ``"index": true``, the batch's arrays (``spec``), the files that
give rows in row order (``files``), the arrays in the order of the tables' rows (``order``)
and the codecs' names (``codec_names``). Its payload holds the tables, uncompressed and laid
out like any frame's arrays (``arrays`` in its meta): ``rows`` (uint64, per file), and
``offsets``, ``lengths`` (uint64) and ``codecs`` (uint8, indexes into ``codec_names``), each
of shape [arrays, files]: where each file's segment of each array is in the batch file
(absolute offset), its bytes and its codec. The file ends with the index frame's offset
(uint64) and ``PLFI``. Reading needs numpy, and pyarrow for zstd (:func:`read_index`,
:func:`iter_array`).
"""

from __future__ import annotations

import functools
import json
import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

MAGIC, INDEX_MAGIC = b"PLF1", b"PLFI"
HEADER = struct.Struct("<4sIQI")
TRAILER = struct.Struct("<Q4s")
PARTIAL = ".partial"
CODECS = ("none", "zstd", "deflate")
"""The codecs of a segment, as the index numbers them."""
TABLES = ("offsets", "lengths", "codecs")
"""The index's tables of segments, each of shape [arrays, files]."""
SMALL = 4096
"""Arrays of fewer bytes are stored as they are: decompressing them would cost more than it saves."""


@dataclass(frozen=True)
class Frame:
    """A frame found in a batch file: where it starts, how long it is, and its meta."""

    offset: int
    size: int
    meta: dict[str, Any]


def partial_path(path: Path) -> Path:
    """The name a batch file is written under until its index is in place."""
    return path.with_name(path.name + PARTIAL)


@functools.cache
def _zstd():
    """pyarrow's zstd codec at level 1 (imported only where a batch file is written or read with it)."""
    import pyarrow as pa
    return pa.Codec("zstd", 1)


def compress(data: bytes, codec: str) -> bytes:
    """``data`` compressed by ``codec`` (``zstd``, ``deflate``, ``none``)."""
    if codec == "zstd":
        return _zstd().compress(data, asbytes=True) if data else b""
    return zlib.compress(data, 1) if codec == "deflate" else data


def decompress(data: bytes | memoryview, codec: str, size: int) -> bytes | memoryview:
    """``data`` as it was before :func:`compress` (bytes-like); ValueError unless it is ``size`` bytes."""
    try:
        if codec == "zstd":
            raw = memoryview(_zstd().decompress(data, decompressed_size=size)).cast("B") if size else b""
        else:
            raw = zlib.decompress(data) if codec == "deflate" else data
    except (OSError, zlib.error) as exc:  # pyarrow reports damaged zstd data as an OSError
        raise ValueError(f"damaged {codec} data: {exc}") from exc
    if len(raw) != size:
        raise ValueError(f"{len(raw)} bytes where {size} were expected")
    return raw


def prepare(codec: str) -> None:
    """Import what ``codec`` needs now (in Luigi's main process, before it forks the tasks that write)."""
    if codec == "zstd":
        _zstd()


def encode(meta: dict[str, Any], arrays: dict[str, np.ndarray], codec: str) -> tuple[list, dict[str, Any]]:
    """One frame as the parts to write in order (header, meta, one segment per array), and its meta as stored:
    ``meta`` plus ``arrays`` (C-order, each compressed by ``codec`` unless it is under :data:`SMALL` bytes).

    An uncompressed segment is the array's own memory (no copy); write the parts before changing the arrays.
    """
    segments, layout, offset = [], {}, 0
    for name in sorted(arrays):
        array = arrays[name]
        raw = memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
        used = codec if raw.nbytes >= SMALL else "none"
        data = raw if used == "none" else compress(raw, used)
        layout[name] = [offset, len(data), array.dtype.str, list(array.shape[1:]), used]
        segments.append(data)
        offset += len(data)
    stored = {**meta, "arrays": layout}
    text = json.dumps(stored, sort_keys=True, separators=(",", ":")).encode()
    crc = zlib.crc32(text)
    for data in segments:
        crc = zlib.crc32(data, crc)
    if meta.get("metadata"):  # as the next run reads it back (a kind's tuples become lists)
        stored["metadata"] = json.loads(json.dumps(meta["metadata"]))
    return [HEADER.pack(MAGIC, len(text), offset, crc), text, *segments], stored


def scan(handle: IO[bytes]) -> tuple[list[Frame], int]:
    """The valid frames from the start of an open batch file, and where the valid prefix ends.

    Stops at the first frame that is torn (too short) or damaged (its CRC differs), and at an
    index frame, which is never kept: appending goes on from the returned offset.
    """
    frames, offset = [], 0
    handle.seek(0)
    while True:
        header = handle.read(HEADER.size)
        if len(header) < HEADER.size:
            return frames, offset
        magic, meta_size, payload_size, crc = HEADER.unpack(header)
        if magic != MAGIC:
            return frames, offset
        text = handle.read(meta_size)
        payload = handle.read(payload_size)
        if len(text) != meta_size or len(payload) != payload_size or zlib.crc32(payload, zlib.crc32(text)) != crc:
            return frames, offset
        try:
            meta = json.loads(text)
        except ValueError:
            return frames, offset
        if meta.get("index"):
            return frames, offset
        size = HEADER.size + meta_size + payload_size
        frames.append(Frame(offset, size, meta))
        offset += size


def read_raw(handle: IO[bytes], frame: Frame) -> bytes:
    """The bytes of ``frame`` as they are in its file (to copy it into another batch file)."""
    handle.seek(frame.offset)
    return handle.read(frame.size)


def index_frame(spec: dict[str, Any], entries: list[dict[str, Any]]) -> bytes:
    """The index frame of the batch's arrays (``spec``) and its files with rows (``entries``: ``file``, ``rows``,
    ``segments``), in row order: tables in the payload, cheap to read (the split reads each index once per array)."""
    order = sorted(spec)
    places = np.array([[entry["segments"][name][:2] for entry in entries] for name in order],
                      dtype=np.uint64).reshape(len(order), len(entries), 2)
    tables = {"rows": np.array([entry["rows"] for entry in entries], dtype=np.uint64),
              "offsets": places[..., 0], "lengths": places[..., 1],
              "codecs": np.array([[CODECS.index(entry["segments"][name][2]) for entry in entries] for name in order],
                                 dtype=np.uint8).reshape(len(order), len(entries))}
    meta = {"index": True, "spec": spec, "files": [entry["file"] for entry in entries], "order": order,
            "codec_names": list(CODECS)}
    return b"".join(encode(meta, tables, "none")[0])


def segments(frame: Frame) -> dict[str, list]:
    """``{array: [absolute offset, bytes, codec]}`` of a frame's payload, for the index."""
    start = frame.offset + frame.size - sum(entry[1] for entry in frame.meta["arrays"].values())
    return {name: [start + entry[0], entry[1], entry[4]] for name, entry in frame.meta["arrays"].items()}


def finish(handle: IO[bytes], offset: int, index: bytes) -> None:
    """Append the index frame at ``offset`` and the trailer that points at it."""
    handle.seek(offset)
    handle.truncate()
    handle.write(index)
    handle.write(TRAILER.pack(offset, INDEX_MAGIC))


def read_index(path: Path) -> dict[str, Any]:
    """The index of a complete batch file (:func:`index_frame`): ``spec``, ``files``, ``codecs`` (names), ``rows``
    (per file) and ``segments``: per array, the files' absolute offsets, lengths and codecs (``codecs``' indexes)."""
    with open(path, "rb") as handle:
        handle.seek(-TRAILER.size, os.SEEK_END)
        offset, magic = TRAILER.unpack(handle.read(TRAILER.size))
        if magic != INDEX_MAGIC:
            raise ValueError(f"{path}: not a complete batch file (no index at its end)")
        handle.seek(offset)
        _, meta_size, payload_size, _ = HEADER.unpack(handle.read(HEADER.size))
        meta = json.loads(handle.read(meta_size))
        payload = handle.read(payload_size)
    if not meta.get("index"):
        raise ValueError(f"{path}: its trailer does not point at an index frame")
    if len(payload) != payload_size:
        raise ValueError(f"{path}: its index ends early")
    files, order = meta["files"], meta["order"]
    tables = {}
    for table, shape in [("rows", [len(files)])] + [(table, [len(order), len(files)]) for table in TABLES]:
        start, length, dtype = meta["arrays"][table][:3]
        tables[table] = np.frombuffer(payload, dtype, length // np.dtype(dtype).itemsize, start).reshape(shape)
    return {"spec": meta["spec"], "files": files, "codecs": meta["codec_names"], "rows": tables["rows"],
            "segments": {name: tuple(tables[table][i] for table in TABLES) for i, name in enumerate(order)}}


def _layouts(spec: dict[str, Any], names: list[str]) -> list[tuple[str, np.dtype, tuple[int, ...], int]]:
    """Name, dtype, row shape and row bytes of each array ``names`` of ``spec``."""
    result = []
    for name in names:
        dtype, shape = np.dtype(spec[name]["dtype"]), tuple(spec[name]["shape"])
        result.append((name, dtype, shape, dtype.itemsize * int(np.prod(shape, dtype=np.int64))))
    return result


def _read(data: bytes | mmap.mmap, segments: list[tuple[int, int, str]], rows: int,
          layouts: list) -> dict[str, np.ndarray]:
    """One file's arrays (``layouts``) from their ``segments`` (``offset, bytes, codec``) in a batch file's ``data``."""
    arrays = {}
    for (name, dtype, shape, row_bytes), (offset, size, codec) in zip(layouts, segments, strict=True):
        segment = data[offset:offset + size]
        if len(segment) != size:
            raise ValueError(f"array {name} ends early")
        arrays[name] = np.frombuffer(decompress(segment, codec, rows * row_bytes), dtype=dtype).reshape(rows, *shape)
    return arrays


def frame_arrays(handle: IO[bytes], frame: Frame, names: list[str]) -> dict[str, np.ndarray]:
    """Arrays ``names`` of a frame found by :func:`scan`."""
    spec = {name: {"dtype": entry[2], "shape": entry[3]} for name, entry in frame.meta["arrays"].items()}
    handle.seek(frame.offset)
    data, where = handle.read(frame.size), segments(frame)
    return _read(data, [(where[name][0] - frame.offset, *where[name][1:]) for name in names], frame.meta["rows"],
                 _layouts(spec, names))


def _segments(index: dict[str, Any], name: str) -> Iterator[tuple[int, int, str]]:
    """``(absolute offset, bytes, codec)`` of array ``name`` of each file of :func:`read_index`'s ``index``."""
    offsets, lengths, codes = index["segments"][name]
    codecs = index["codecs"]
    return zip(offsets.tolist(), lengths.tolist(), [codecs[code] for code in codes.tolist()], strict=True)


def iter_files(path: Path, index: dict[str, Any], names: list[str]) -> Iterator[dict[str, np.ndarray]]:
    """Arrays ``names`` of each file of a complete batch file, in row order (mapped: no read call per array)."""
    layouts = _layouts(index["spec"], names)
    columns = [_segments(index, name) for name in names]
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for rows, *segments in zip(index["rows"].tolist(), *columns, strict=True):
            yield _read(data, segments, rows, layouts)


def iter_array(path: Path, index: dict[str, Any], name: str, chunk_rows: int) -> Iterator[np.ndarray]:
    """Rows of array ``name`` over the batch in row order, in chunks of ``chunk_rows`` (the last one shorter).

    Each file's segment is copied (decompressed first unless stored as it is) from the mapped
    file straight into the chunk being filled; a chunk is a fresh array, never a view of the file.
    """
    ((_, dtype, shape, row_bytes),) = _layouts(index["spec"], [name])
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data, \
            memoryview(data) as mapped:
        end = len(mapped)
        chunk, filled = np.empty((chunk_rows, *shape), dtype), 0  # filled: rows
        target = memoryview(chunk.reshape(-1).view(np.uint8))
        for rows, (offset, size, codec) in zip(index["rows"].tolist(), _segments(index, name), strict=True):
            if offset + size > end:
                raise ValueError(f"{path}: array {name} ends early")
            if codec == "none":
                if size != rows * row_bytes:
                    raise ValueError(f"{path}: array {name}: {size} bytes where {rows * row_bytes} were expected")
                source, start = mapped, offset  # no copy of the segment: slices of the map, released at once
            else:
                with mapped[offset:offset + size] as segment:
                    try:
                        source, start = memoryview(decompress(segment, codec, rows * row_bytes)), 0
                    except ValueError as exc:
                        raise ValueError(f"{path}: array {name}: {exc}") from exc
            while filled + rows >= chunk_rows:  # the file fills the chunk: yield it, go on with a fresh one
                length = (chunk_rows - filled) * row_bytes
                target[filled * row_bytes:] = source[start:start + length]
                start, rows = start + length, rows - (chunk_rows - filled)
                yield chunk
                chunk, filled = np.empty((chunk_rows, *shape), dtype), 0
                target = memoryview(chunk.reshape(-1).view(np.uint8))
            at = filled * row_bytes
            target[at:at + rows * row_bytes] = source[start:start + rows * row_bytes]
            filled += rows
        if filled:
            yield chunk[:filled]
