"""Atomic, streaming storage: complete files or nothing, loadable without pickle."""

from __future__ import annotations

import inspect
import io
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from conftest import ROOT

from pipeline.engine.storage import (
    TEMP_MARK,
    ArrayWriter,
    ChecksumWriter,
    NpzWriter,
    atomic_open,
    file_checksum,
    iter_npz_member,
    iter_rows,
    remove_stale_temps,
)


def write_npy(path, chunks, dtype, row_shape, rows) -> None:
    """Stream ``chunks`` into a .npy at ``path``, atomically, as the split writes ``final/X_*.npy``."""
    with atomic_open(path) as handle:
        writer = ArrayWriter(handle, dtype, row_shape, rows)
        for chunk in chunks:
            writer.append(chunk)
        writer.close()


def test_streamed_npy_equals_numpy_save(tmp_path):
    data = np.arange(7 * 3 * 2, dtype=np.int16).reshape(7, 3, 2)
    write_npy(tmp_path / "a.npy", iter(np.array_split(data, 3)), data.dtype, (3, 2), 7)
    assert np.array_equal(np.load(tmp_path / "a.npy", allow_pickle=False), data)
    assert np.array_equal(np.load(tmp_path / "a.npy", mmap_mode="r"), data)
    chunks = list(iter_rows(io.BytesIO((tmp_path / "a.npy").read_bytes()), 2))
    assert [len(c) for c in chunks] == [2, 2, 2, 1]


def test_the_checksum_taken_while_writing_is_the_files(tmp_path):
    data = np.random.default_rng(1).random((1000, 7))
    with atomic_open(tmp_path / "a.npy") as handle:
        counted = ChecksumWriter(handle)
        writer = ArrayWriter(counted, data.dtype, (7,), 1000)
        for chunk in np.array_split(data, 4):
            writer.append(chunk)
        writer.close()
    assert counted.checksum == file_checksum(tmp_path / "a.npy")


def test_a_wrong_row_count_never_reaches_the_final_name(tmp_path):
    with pytest.raises(ValueError, match="wrote 2 rows of 3"):
        write_npy(tmp_path / "a.npy", iter([np.zeros((2, 4))]), np.float64, (4,), 3)
    assert os.listdir(tmp_path) == []


def test_npz_members_stream_and_load_without_pickle(tmp_path):
    a, b = np.random.default_rng(0).random((50, 4)), np.arange(50, dtype=np.uint64)
    with atomic_open(tmp_path / "x.npz") as handle, NpzWriter(handle) as writer:
        writer.add("a", iter([a[:20], a[20:]]), a.dtype, (4,), 50)
        writer.add("b", iter([b]), b.dtype, (), 50)
    with np.load(tmp_path / "x.npz", allow_pickle=False) as loaded:
        assert np.array_equal(loaded["a"], a) and np.array_equal(loaded["b"], b)
    assert np.array_equal(np.concatenate(list(iter_npz_member(tmp_path / "x.npz", "a", 7))), a)


def test_a_flipped_bit_in_an_npz_member_is_detected(tmp_path):
    with atomic_open(tmp_path / "x.npz") as handle, NpzWriter(handle) as writer:
        writer.add("a", iter([np.ones((1000, 8))]), np.float64, (8,), 1000)
    raw = bytearray((tmp_path / "x.npz").read_bytes())
    raw[4000] ^= 1
    (tmp_path / "x.npz").write_bytes(bytes(raw))
    with pytest.raises(zipfile.BadZipFile, match="CRC"):
        list(iter_npz_member(tmp_path / "x.npz", "a", 100))


def test_kill_9_mid_write_leaves_no_final_file_and_the_temp_is_cleaned(tmp_path):
    final = tmp_path / "big.npy"
    writer = (f"import sys, time, numpy as np; sys.path.insert(0, {str(ROOT)!r})\n"
              "from pipeline.engine.storage import ArrayWriter, atomic_open\n"
              f"{inspect.getsource(write_npy)}\n"
              "def chunks():\n"
              "    while True:\n"
              "        yield np.zeros((1000, 100))\n"
              "        time.sleep(0.01)\n"
              f"write_npy(__import__('pathlib').Path({str(final)!r}), chunks(), np.float64, (100,), 10**9)\n")
    process = subprocess.Popen([sys.executable, "-c", writer])
    deadline = time.monotonic() + 30
    while not any(TEMP_MARK in p.name for p in tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    temps = [p for p in tmp_path.iterdir() if TEMP_MARK in p.name]
    assert not final.exists() and len(temps) == 1 and temps[0].stat().st_size > 0
    assert remove_stale_temps(tmp_path) == 1
    assert list(tmp_path.iterdir()) == []
