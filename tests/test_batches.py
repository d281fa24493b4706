"""The batch file: a frame per input file, resumed frame by frame, read back as the kind made the rows."""

from __future__ import annotations

import json
import os
import struct
import zlib

import numpy as np
import pyarrow as pa
import pytest
from conftest import hex_recipe

from pipeline.engine import frames
from pipeline.engine.batches import batches_as_merged, build_batch, process_file
from pipeline.engine.discovery import discover
from pipeline.engine.merge import MERGE, merge_batches
from pipeline.engine.plan import make_plan
from pipeline.engine.records import read_record
from pipeline.engine.status import dataset_status, status_report
from pipeline.recipe import load_recipe
from pipeline.synthetic.hex import write_corpus


def plan_of(tmp_path, name: str = "hex", files: int = 6, compression: str = "zstd", size: int = 5,
            batch_files: int | None = None):
    if not (tmp_path / "in").exists():
        write_corpus(tmp_path / "in", files=files, games=3, size=size, seed=2)
    recipe = load_recipe(hex_recipe(tmp_path, tmp_path / "in", name=name, process={"board_size": size},
                                    batch={"files_per_batch": batch_files or files, "compression": compression}))
    return make_plan(recipe, discover(recipe.input_dir, recipe.pattern))


def rows_of(path, name: str) -> np.ndarray:
    return np.concatenate(list(frames.iter_array(path, frames.read_index(path), name, 7)))


@pytest.mark.parametrize("compression", ["zstd", "deflate", "none"])
def test_the_batch_file_holds_each_files_rows_in_file_order(tmp_path, compression):
    plan = plan_of(tmp_path, compression=compression, size=11)
    record = build_batch(plan, plan.batches[0])
    kind, settings = plan.recipe.kind, plan.recipe.kind_settings
    direct = [process_file(kind, settings, plan.recipe.input_dir / f.relative, f.relative)[0].arrays
              for f in plan.batches[0].files]
    path = plan.layout.batch(0)
    for name in ("X", "group", "value"):
        assert np.array_equal(rows_of(path, name), np.concatenate([arrays[name] for arrays in direct]))
    assert record["rows"] == sum(len(arrays["X"]) for arrays in direct)
    assert not frames.partial_path(path).exists() and not plan.layout.files.exists(), "no file per input"


def test_compression_shrinks_the_batch_file(tmp_path):
    sizes = {}
    for codec in ("zstd", "deflate", "none"):
        plan = plan_of(tmp_path, codec, compression=codec, size=11)  # boards of 11x11: arrays over 4 KiB
        build_batch(plan, plan.batches[0])
        sizes[codec] = plan.layout.batch(0).stat().st_size
    assert sizes["zstd"] * 3 < sizes["none"] and sizes["deflate"] * 3 < sizes["none"]


def test_a_torn_batch_resumes_after_its_last_whole_frame_byte_identical(tmp_path):
    plan = plan_of(tmp_path)
    build_batch(plan, plan.batches[0])
    path = plan.layout.batch(0)
    clean = path.read_bytes()
    with open(path, "rb") as handle:
        found, _ = frames.scan(handle)
    assert len(found) == 6
    cut = found[3].offset + found[3].size // 2  # a kill while the fourth file's frame was being written
    frames.partial_path(path).write_bytes(clean[:cut])
    path.unlink()
    plan.layout.batch_record(0).unlink()
    assert "batch 0 is partly written: 3 files kept" in status_report(dataset_status(plan))
    record = build_batch(plan, plan.batches[0])
    assert record["files_reused"] == 3, "the three whole frames are kept, the torn one redone"
    assert path.read_bytes() == clean


def test_a_changed_file_is_the_only_one_read_again_and_leaves_no_dead_rows(tmp_path):
    plan = plan_of(tmp_path)
    build_batch(plan, plan.batches[0])
    changed = plan.recipe.input_dir / plan.batches[0].files[2].relative
    lines = changed.read_text().splitlines()
    changed.write_text("\n".join(lines[:1]) + "\n")
    os.utime(changed, ns=(1, 1))
    again = make_plan(plan.recipe, discover(plan.recipe.input_dir, plan.recipe.pattern))
    record = build_batch(again, again.batches[0])
    assert record["files_reused"] == 5
    fresh = plan_of(tmp_path, "fresh")
    build_batch(fresh, fresh.batches[0])
    assert again.layout.batch(0).stat().st_size == fresh.layout.batch(0).stat().st_size, "stale frames dropped"
    for name in ("X", "group", "policy"):
        assert np.array_equal(rows_of(again.layout.batch(0), name), rows_of(fresh.layout.batch(0), name))


def test_an_incomplete_batch_file_has_no_index(tmp_path):
    plan = plan_of(tmp_path)
    build_batch(plan, plan.batches[0])
    path = plan.layout.batch(0)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="no index"):
        frames.read_index(path)


def test_the_merge_tells_unchanged_batches_by_their_records_and_a_rebuilt_one_by_its_checksum(tmp_path):
    plan = plan_of(tmp_path, batch_files=2)
    for batch in plan.batches:
        build_batch(plan, batch)
    merge_batches(plan)
    facts = read_record(plan.layout.root, MERGE)
    assert batches_as_merged(plan, facts.facts)
    plan.layout.batch(0).unlink()
    build_batch(plan, plan.batches[0])  # the same rows again: a new record, the same checksum
    assert batches_as_merged(plan, facts.facts)
    record = json.loads(plan.layout.batch_record(0).read_text())
    record["outputs"]["batch_0000.frames"]["checksum"] = "crc32:00000000"
    plan.layout.batch_record(0).write_text(json.dumps(record))
    assert not batches_as_merged(plan, facts.facts), "a batch that is not the one merged makes the merge stale"


def write_batch_file(path, files: list[dict[str, np.ndarray]], codecs: list[str]) -> None:
    """A complete batch file of one frame per file (each compressed by its codec) and their index."""
    entries, end = [], 0
    with open(path, "w+b") as handle:
        for number, (arrays, codec) in enumerate(zip(files, codecs, strict=True)):
            parts, stored = frames.encode({"file": f"f{number}", "rows": len(arrays["X"])}, arrays, codec)
            handle.writelines(parts)
            frame = frames.Frame(end, sum(len(part) for part in parts), stored)
            end += frame.size
            entries.append({"file": f"f{number}", "rows": len(arrays["X"]), "segments": frames.segments(frame)})
        spec = {name: {"dtype": array.dtype.str, "shape": list(array.shape[1:])} for name, array in files[0].items()}
        frames.finish(handle, end, frames.index_frame(spec, entries))


def varied_files(counts: list[int]) -> list[dict[str, np.ndarray]]:
    """Files of ``counts`` rows: X of 2x11x11 uint8 (over 4 KiB from 17 rows on: compressed), small arrays."""
    generator = np.random.default_rng(5)
    return [{"X": generator.integers(0, 3, (rows, 2, 11, 11), dtype=np.uint8),
             "group": generator.integers(0, 2**63, rows, dtype=np.uint64),
             "value": generator.standard_normal(rows).astype(np.float32)} for rows in counts]


@pytest.mark.parametrize("chunk_rows", [1, 4, 7, 40, 43, 107, 128, 1000])
def test_iter_array_chunks_are_the_files_rows_end_to_end(tmp_path, chunk_rows):
    counts = [3, 0, 40, 1, 17, 0, 5, 60, 2]  # files without rows, larger than a chunk; 43 and 128 end on a file
    files, path = varied_files(counts), tmp_path / "batch.frames"
    write_batch_file(path, files, ["zstd", "deflate", "none"] * 3)
    index = frames.read_index(path)
    for name in ("X", "group", "value"):
        chunks = list(frames.iter_array(path, index, name, chunk_rows))
        assert [len(chunk) for chunk in chunks[:-1]] == [chunk_rows] * (len(chunks) - 1)
        assert 0 < len(chunks[-1]) <= chunk_rows
        expected = np.concatenate([arrays[name] for arrays in files])
        assert np.concatenate(chunks).dtype == expected.dtype
        assert np.concatenate(chunks).tobytes() == expected.tobytes()


def test_iter_array_refuses_a_segment_of_the_wrong_size_and_releases_the_file(tmp_path):
    path = tmp_path / "batch.frames"
    write_batch_file(path, varied_files([3, 40, 5, 60]), ["none", "zstd", "deflate", "zstd"])
    index = frames.read_index(path)
    chunks = frames.iter_array(path, index, "X", 10)
    next(chunks)
    chunks.close()  # left in the middle of a file: the map closes (no BufferError)
    offsets, lengths, codecs = (column.astype(np.int64) for column in index["segments"]["X"])
    for file, change in [(0, -1), (1, -1), (2, -1), (3, 1)]:
        damaged = lengths.copy()
        damaged[file] += change
        with pytest.raises(ValueError, match="array X"):
            list(frames.iter_array(path, {**index, "segments": {"X": (offsets, damaged, codecs)}}, "X", 10))
    beyond = offsets.copy()
    beyond[3] = path.stat().st_size
    with pytest.raises(ValueError, match="array X ends early"):
        list(frames.iter_array(path, {**index, "segments": {"X": (beyond, lengths, codecs)}}, "X", 10))


def read_as_documented(path, name: str) -> np.ndarray:
    """Array ``name`` of a batch file read as docs/pipeline.md "Batch files" says, with numpy, zlib and pyarrow."""
    data = path.read_bytes()
    index_offset, magic = struct.unpack("<Q4s", data[-12:])
    assert magic == b"PLFI"
    tag, meta_size, payload_size, crc = struct.unpack("<4sIQI", data[index_offset:index_offset + 20])
    meta_start = index_offset + 20
    assert tag == b"PLF1" and zlib.crc32(data[meta_start:meta_start + meta_size + payload_size]) == crc
    meta = json.loads(data[meta_start:meta_start + meta_size])
    payload = data[meta_start + meta_size:meta_start + meta_size + payload_size]
    tables = {key: np.frombuffer(payload[offset:offset + size], dtype).reshape(-1, *shape)
              for key, (offset, size, dtype, shape, codec) in meta["arrays"].items() if codec == "none"}
    a, spec = meta["order"].index(name), meta["spec"][name]
    parts = []
    for f, rows in enumerate(tables["rows"].tolist()):
        segment = data[tables["offsets"][a, f]:tables["offsets"][a, f] + tables["lengths"][a, f]]
        codec = meta["codec_names"][tables["codecs"][a, f]]
        if codec == "zstd":
            row_bytes = np.dtype(spec["dtype"]).itemsize * int(np.prod(spec["shape"]))
            segment = pa.Codec("zstd").decompress(segment, rows * row_bytes, asbytes=True)
        elif codec == "deflate":
            segment = zlib.decompress(segment)
        parts.append(np.frombuffer(segment, spec["dtype"]).reshape(rows, *spec["shape"]))
    return np.concatenate(parts)


def test_a_reader_with_numpy_alone_reads_the_batch_file_as_documented(tmp_path):
    files, path = varied_files([3, 40, 1, 17, 60]), tmp_path / "batch.frames"
    write_batch_file(path, files, ["zstd", "deflate", "none", "deflate", "zstd"])
    for name in ("X", "group", "value"):
        assert np.array_equal(read_as_documented(path, name), np.concatenate([arrays[name] for arrays in files]))
