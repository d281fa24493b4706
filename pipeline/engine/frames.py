"""The batch file: one frame per input file, appended as the batch goes, then an index.

A batch file (``intermediate/batch_NNNN.frames``) is written under ``.partial`` while its
batch runs, one frame per processed input file, so a crash leaves a readable prefix: the
next run keeps the valid frames, cuts a torn tail and goes on. When every file has its
frame, an index frame is appended and the file is renamed into place.

A frame is a 20-byte header — ``PLF1``, the length of its meta (uint32), the length of its
payload (uint64), the CRC-32 of meta and payload (uint32), all little-endian — then the
meta (JSON: the input file, its fingerprint, counts, failures, metadata, and each array's
``[offset in the payload, bytes, dtype, row shape]``), then the payload: each array's raw
C-order bytes, deflated (zlib) when the meta's ``codec`` is ``deflate``.

The index frame's meta has ``"index": true``, the batch's arrays (``spec``) and, in row order, each
file that gives rows with its segments' absolute offsets. The file ends with the index
frame's offset (uint64) and ``PLFI``. Reading needs numpy and the standard library only
(:func:`read_index`, :func:`iter_array`).
"""

from __future__ import annotations

import json
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


@dataclass(frozen=True)
class Frame:
    """A frame found in a batch file: where it starts, how long it is, and its meta."""

    offset: int
    size: int
    meta: dict[str, Any]


def partial_path(path: Path) -> Path:
    """The name a batch file is written under until its index is in place."""
    return path.with_name(path.name + PARTIAL)


def encode(meta: dict[str, Any], arrays: dict[str, np.ndarray], deflate: bool) -> tuple[bytes, dict[str, Any]]:
    """One frame, and its meta as stored: ``meta`` plus ``arrays`` (C-order, deflated at level 1 when ``deflate``)."""
    segments, layout, offset = [], {}, 0
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        data = array.reshape(-1).view(np.uint8).tobytes() if array.size else b""
        data = zlib.compress(data, 1) if deflate else data
        layout[name] = [offset, len(data), array.dtype.str, list(array.shape[1:])]
        segments.append(data)
        offset += len(data)
    stored = {**meta, "codec": "deflate" if deflate else "none", "arrays": layout}
    text = json.dumps(stored, sort_keys=True, separators=(",", ":")).encode()
    payload = b"".join(segments)
    header = HEADER.pack(MAGIC, len(text), len(payload), zlib.crc32(payload, zlib.crc32(text)))
    return header + text + payload, json.loads(text)


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
    """The index frame: the batch's arrays (``spec``) and, in row order, each file's absolute segments."""
    return encode({"index": True, "spec": spec, "files": entries}, {}, False)[0]


def segments(frame: Frame) -> dict[str, list]:
    """``{array: [absolute offset, bytes]}`` of a frame's payload, for the index."""
    start = frame.offset + frame.size - sum(entry[1] for entry in frame.meta["arrays"].values())
    return {name: [start + entry[0], entry[1]] for name, entry in frame.meta["arrays"].items()}


def finish(handle: IO[bytes], offset: int, index: bytes) -> None:
    """Append the index frame at ``offset`` and the trailer that points at it."""
    handle.seek(offset)
    handle.truncate()
    handle.write(index)
    handle.write(TRAILER.pack(offset, INDEX_MAGIC))


def read_index(path: Path) -> dict[str, Any]:
    """The index of a complete batch file: ``spec`` ({array: {dtype, shape}}) and ``files`` in row order."""
    with open(path, "rb") as handle:
        handle.seek(-TRAILER.size, os.SEEK_END)
        offset, magic = TRAILER.unpack(handle.read(TRAILER.size))
        if magic != INDEX_MAGIC:
            raise ValueError(f"{path}: not a complete batch file (no index at its end)")
        handle.seek(offset)
        _, meta_size, _, _ = HEADER.unpack(handle.read(HEADER.size))
        meta = json.loads(handle.read(meta_size))
    if not meta.get("index"):
        raise ValueError(f"{path}: its trailer does not point at an index frame")
    return meta


def iter_array(path: Path, index: dict[str, Any], name: str, chunk_rows: int) -> Iterator[np.ndarray]:
    """Rows of array ``name`` over the batch in row order, in chunks of ``chunk_rows`` (the last one shorter)."""
    spec = index["spec"][name]
    dtype, shape = np.dtype(spec["dtype"]), tuple(spec["shape"])
    pending, held = [], 0
    with open(path, "rb") as handle:
        for entry in index["files"]:
            offset, size = entry["segments"][name]
            handle.seek(offset)
            data = handle.read(size)
            if len(data) != size:
                raise ValueError(f"{path}: {entry['file']}'s {name} ends early")
            if entry["codec"] == "deflate":
                data = zlib.decompress(data)
            rows = np.frombuffer(data, dtype=dtype).reshape(entry["rows"], *shape)
            pending.append(rows)
            held += len(rows)
            while held >= chunk_rows:
                joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
                yield joined[:chunk_rows]
                pending, held = [joined[chunk_rows:]], held - chunk_rows
    if held:
        yield np.concatenate(pending) if len(pending) > 1 else pending[0]
