"""Running OpenPTV on a PTV plan: pyptv's per-frame sequence step by chunk, then optv's tracker.

optv reads and writes files relative to the current directory, so each step runs in a
scratch folder of the output folder that mirrors the experiment (links to the images and
calibrations, copies of anything the engine rewrites). Results are moved into place with
``os.replace``; the record that marks a frame, chunk or the tracking done is written last.
The engine's printed output goes to ``logs/<step>.log``.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import re
import shutil
import sys
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.engine.records import is_complete, write_record
from pipeline.engine.storage import atomic_open, atomic_path, read_json, write_json
from pipeline.errors import PipelineError
from pipeline.kinds.ptv import INSTALL_HINT, TRACKING, Chunk, ExperimentError, PtvPlan, load_parameters

Progress = Callable[..., None]
ROWS_PER_GROUP = 1 << 16
UPSTREAM_NAME = re.compile(r"(rt_is|ptv_is|added)\.\d+|cam\d+\.\d+_targets")


class FrameError(PipelineError):
    """A frame the engine could not process under ``on_error = "fail"``."""


def _upstream() -> types.ModuleType:
    try:
        from pyptv import ptv
    except ImportError as exc:
        raise ExperimentError(f"the ptv kind needs optv and pyptv ({exc}); {INSTALL_HINT}") from None
    return ptv


@contextmanager
def _stdout_to(log: Path) -> Iterator[None]:
    """Send everything printed to standard output, by Python and by C alike, to ``log``."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)
    saved = os.dup(1)
    try:
        with open(log, "a", buffering=1) as handle:
            os.dup2(handle.fileno(), 1)
            try:
                with contextlib.redirect_stdout(handle):
                    yield
            finally:
                libc.fflush(None)
                os.dup2(saved, 1)
    finally:
        os.close(saved)


@contextmanager
def working_dir(plan: PtvPlan, name: str, links: list[str], copies: dict[str, Path]) -> Iterator[Path]:
    """A fresh scratch folder mirroring the experiment, as current directory, printing to its log.

    ``links`` are experiment files the engine only reads (symlinked); ``copies`` map a
    relative name to a file the engine rewrites (copied). The log moves to ``logs/`` and
    the folder is removed at the end, whatever happens.
    """
    scratch = plan.layout.scratch(name)
    shutil.rmtree(scratch, ignore_errors=True)
    for folder in ("res", *{str(Path(b).parent) for b in plan.experiment.target_bases}):
        (scratch / folder).mkdir(parents=True, exist_ok=True)
    for relative in links:
        (scratch / relative).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(plan.experiment.root / relative, scratch / relative)
    for relative, source in copies.items():
        (scratch / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, scratch / relative)
    log = scratch / "engine.log"
    cwd = os.getcwd()
    os.chdir(scratch)
    try:
        with _stdout_to(log):
            yield scratch
    finally:
        os.chdir(cwd)
        plan.layout.log(name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(log, plan.layout.log(name))
        shutil.rmtree(scratch, ignore_errors=True)
        with contextlib.suppress(OSError):
            scratch.parent.rmdir()


def start_engine(plan: PtvPlan) -> types.SimpleNamespace:
    """pyptv's processing state, as its batch mode builds it (calibrations read from the current directory)."""
    ptv = _upstream()
    manager = load_parameters(plan.experiment.parameters)
    cpar, spar, vpar, track_par, tpar, cals, epar = ptv.py_start_proc_c(manager)
    return types.SimpleNamespace(pm=manager, cpar=cpar, spar=spar, vpar=vpar, track_par=track_par, tpar=tpar,
                                 cals=cals, epar=epar, num_cams=manager.num_cams, detections=[], corrected=[],
                                 target_filenames=manager.get_target_filenames())


def read_rows(path: Path, columns: int) -> np.ndarray:
    """The rows of an upstream text file whose first line is the row count (-1 or 0: none)."""
    words = path.read_text().split()
    count = max(int(words[0]), 0) if words else 0
    if len(words) - 1 != count * columns:
        raise ValueError(f"{path}: {len(words) - 1} values for {count} rows of {columns}")
    return np.array(words[1:], dtype=np.float64).reshape(count, columns)


def frame_counts(plan: PtvPlan, frame: int) -> dict[str, Any]:
    """Particles, correspondences by number of cameras and targets per camera of a processed frame."""
    sequence = plan.layout.sequence
    rt_is = read_rows(sequence / f"res/rt_is.{frame}", 8)
    cameras = (rt_is[:, 4:] >= 0).sum(axis=1).astype(int)
    by_cameras = collections.Counter(cameras.tolist())
    targets = []
    for name in plan.experiment.frame_outputs(frame)[1:]:
        with open(sequence / name) as handle:
            targets.append(max(int(handle.readline().split()[0]), 0))
    return {"particles": len(rt_is), "correspondences": {str(k): by_cameras[k] for k in sorted(by_cameras)},
            "targets": targets}


class _Listing:
    """Which files exist, from one directory listing per folder."""

    def __init__(self) -> None:
        self.names: dict[Path, set[str]] = {}

    def __contains__(self, path: Path) -> bool:
        if path.parent not in self.names:
            self.names[path.parent] = set(os.listdir(path.parent)) if path.parent.is_dir() else set()
        return path.name in self.names[path.parent]


def _frames_present(plan: PtvPlan, frames: range, listing: _Listing) -> list[int]:
    """Frames whose record and every output file exist."""
    layout, experiment = plan.layout, plan.experiment
    return [frame for frame in frames if layout.frame_record(frame) in listing
            and all(layout.sequence / name in listing for name in experiment.frame_outputs(frame))]


def _done_frames(plan: PtvPlan, chunk: Chunk) -> set[int]:
    """Frames of ``chunk`` whose outputs exist and whose record matches the plan.

    A frame recorded as failed (under ``on_error = "skip"``) counts as done only while
    failures are skipped; under ``"fail"`` it is tried again.
    """
    done = set()
    for frame in _frames_present(plan, chunk.frames, _Listing()):
        record = read_json(plan.layout.frame_record(frame)) or {}
        failed_now = plan.on_error == "fail" and record.get("failure")
        if record.get("fingerprint") == chunk.frame_fingerprints[frame] and not failed_now:
            done.add(frame)
    return done


def _failure(plan: PtvPlan, frame: int, exc: BaseException, scratch: Path) -> dict[str, Any]:
    """The failure record of a frame: the input its message names (else the experiment folder), class, message."""
    inputs = plan.experiment.frame_inputs(frame)
    message = (str(exc) or type(exc).__name__).replace(str(scratch) + os.sep, "")
    named = next((name for name in inputs if name in message), "")
    return {"file": str(plan.experiment.root / named), "frame": frame, "error": type(exc).__name__,
            "message": message}


def run_chunk(plan: PtvPlan, chunk: Chunk, progress: Progress | None = None) -> dict[str, Any]:
    """Process the frames of ``chunk`` not yet done; write and return the chunk record."""
    layout, experiment = plan.layout, plan.experiment
    started = time.monotonic()
    done = _done_frames(plan, chunk)
    todo = [frame for frame in chunk.frames if frame not in done]
    name = f"chunk_{chunk.index:04d}"
    record = {"chunk": chunk.index, "first": chunk.frames.start, "last": chunk.frames.stop - 1,
              "frames": len(chunk.frames), "frames_reused": len(done), "frames_processed": 0,
              "fingerprint": chunk.fingerprint, "status": "running"}
    error = None
    if todo:
        inputs = [name for frame in todo for name in experiment.frame_inputs(frame)]
        links = [*experiment.calibrations, *experiment.masks]
        # Targets files are rewritten by the engine, so they are copied; images are only read.
        copies = {name: experiment.root / name for name in inputs} if experiment.existing_targets else {}
        links += [] if experiment.existing_targets else inputs
        with working_dir(plan, name, links, copies) as scratch:
            ptv, run = _upstream(), start_engine(plan)
            for step, frame in enumerate(todo, start=1):
                error = _process_frame(plan, chunk, frame, ptv, run, scratch)
                record["frames_processed"] = step
                if error:
                    break
                if progress:
                    progress(len(done) + step, len(chunk.frames))
    records = [read_json(layout.frame_record(frame)) or {} for frame in chunk.frames]
    record.update(_totals(records))
    record["seconds"] = round(time.monotonic() - started, 3)
    record["status"] = "failed" if error else "done"
    if error:
        record["error"] = error
    write_json(layout.chunk_record(chunk.index), record)
    if error:
        raise FrameError(f"{error['file']}: frame {error['frame']}: {error['error']}: {error['message']}")
    return record


def _process_frame(plan: PtvPlan, chunk: Chunk, frame: int, ptv: types.ModuleType,
                   run: types.SimpleNamespace, scratch: Path) -> dict[str, Any] | None:
    """Run pyptv's sequence step on one frame and move its outputs; the failure that stops the chunk, or None."""
    layout, experiment = plan.layout, plan.experiment
    started = time.monotonic()
    failure = None
    try:
        run.spar.set_first(frame)
        run.spar.set_last(frame)
        ptv.py_sequence_loop(run)
        for name in experiment.frame_outputs(frame):
            (layout.sequence / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(scratch / name, layout.sequence / name)
    except Exception as exc:  # noqa: BLE001 - a bad frame is recorded, never lost
        failure = _failure(plan, frame, exc, scratch)
        if plan.on_error == "fail":
            return failure
        for name in experiment.frame_outputs(frame):
            with atomic_open(layout.sequence / name) as handle:
                handle.write(b"0\n")
    record = {"frame": frame, "fingerprint": chunk.frame_fingerprints[frame], "failure": failure,
              "seconds": round(time.monotonic() - started, 3), **frame_counts(plan, frame)}
    write_json(layout.frame_record(frame), record)
    return None


def _totals(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Particles, correspondences, targets and failures summed over the frame records there are."""
    records = [record for record in records if record]
    correspondences: collections.Counter = collections.Counter()
    for record in records:
        correspondences.update(record["correspondences"])
    targets = np.sum([record["targets"] for record in records], axis=0, dtype=np.int64) if records else []
    failures = [record["failure"] for record in records if record["failure"]]
    return {"particles": sum(record["particles"] for record in records),
            "correspondences": dict(sorted(correspondences.items())),
            "targets": np.asarray(targets).tolist(), "frames_failed": len(failures), "failures": failures}


def chunk_is_complete(plan: PtvPlan, chunk: Chunk) -> bool:
    """Cheap check: the chunk record says done and matches the plan, and its frames' files are all there."""
    record = read_json(plan.layout.chunk_record(chunk.index))
    if not record or record.get("status") != "done" or record.get("fingerprint") != chunk.fingerprint:
        return False
    return len(_frames_present(plan, chunk.frames, _Listing())) == len(chunk.frames)


def track(plan: PtvPlan, progress: Progress | None = None) -> dict[str, Any]:
    """Track particles over all frames with optv's Tracker; write upstream's files, trajectories and summary."""
    layout, experiment = plan.layout, plan.experiment
    started = time.monotonic()
    chunks = [read_json(layout.chunk_record(chunk.index)) for chunk in plan.chunks]
    frames = plan.frames
    copies = {name: layout.sequence / name for frame in frames for name in experiment.frame_outputs(frame)}
    with working_dir(plan, "tracking", list(experiment.calibrations), copies) as scratch:
        run = start_engine(plan)
        run.spar.set_first(frames.start)
        run.spar.set_last(frames.stop - 1)
        _upstream().py_trackcorr_init(run).full_forward()
        if progress:
            progress(1, 3)
        for frame in frames:
            for name in tracked_files(plan, frame):
                (layout.root / name).parent.mkdir(parents=True, exist_ok=True)
                os.replace(scratch / name, layout.root / name)
    _remove_other_frames(plan)
    if progress:
        progress(2, 3)
    tracking = write_trajectories(layout.root / "res", frames, layout.trajectories)
    tracking["seconds"] = round(time.monotonic() - started, 3)
    summary = {
        "experiment": str(experiment.root), "parameters": str(experiment.parameters), "cameras": experiment.cameras,
        "frames": {"first": frames.start, "last": frames.stop - 1, "count": len(frames)},
        "chunks": [{key: value for key, value in record.items() if key != "fingerprint"} for record in chunks],
        "particles": sum(record["particles"] for record in chunks),
        "frames_failed": sum(record["frames_failed"] for record in chunks),
        "tracking": {**tracking, "status": "done"},
    }
    write_json(layout.summary, summary)
    write_record(layout.root, TRACKING, plan.tracking_fingerprint,
                 [*(layout.root / name for frame in frames for name in tracked_files(plan, frame)),
                  layout.trajectories, layout.summary])
    if progress:
        progress(3, 3)
    return summary


def _remove_other_frames(plan: PtvPlan) -> None:
    """Remove upstream files of frames outside the plan's range, left by an earlier run over other frames."""
    keep = {plan.layout.root / name for frame in plan.frames for name in tracked_files(plan, frame)}
    folders = {plan.layout.root / "res", *{plan.layout.root / Path(b).parent for b in plan.experiment.target_bases}}
    for folder in folders:
        for name in os.listdir(folder):
            if UPSTREAM_NAME.fullmatch(name) and folder / name not in keep:
                (folder / name).unlink()


def write_trajectories(res: Path, frames: range, path: Path) -> dict[str, int]:
    """Follow the links of ``ptv_is.<frame>`` files into (trajectory, frame, particle, x, y, z) rows.

    A particle whose predecessor link is set continues that particle's trajectory; any
    other particle starts a new one, numbered in order of first appearance. Every
    particle becomes a row, so unlinked particles are trajectories of length one.
    """
    import pyarrow as pa  # here: runs of other flows never load it
    import pyarrow.parquet as pq

    schema = pa.schema([("trajectory", pa.int64()), ("frame", pa.int32()), ("particle", pa.int32()),
                        ("x", pa.float64()), ("y", pa.float64()), ("z", pa.float64())])
    previous, next_id, rows, links, pending = None, 0, 0, 0, []
    with atomic_path(path) as temp:
        writer = pq.ParquetWriter(temp, schema)
        for frame in frames:
            table = read_rows(res / f"ptv_is.{frame}", 5)
            prev = table[:, 0].astype(np.int64)
            linked = prev >= 0 if previous is not None else np.zeros(len(prev), dtype=bool)
            ids = np.empty(len(prev), dtype=np.int64)
            if linked.any():
                if prev[linked].max() >= len(previous) or len(np.unique(prev[linked])) < linked.sum():
                    raise ValueError(f"{res / f'ptv_is.{frame}'}: predecessor links do not match frame {frame - 1}")
                ids[linked] = previous[prev[linked]]
            fresh = int((~linked).sum())
            ids[~linked] = np.arange(next_id, next_id + fresh)
            next_id, previous = next_id + fresh, ids
            links += int(linked.sum())
            rows += len(ids)
            pending.append(pa.table({"trajectory": ids, "frame": np.full(len(ids), frame, dtype=np.int32),
                                     "particle": np.arange(len(ids), dtype=np.int32), "x": table[:, 2],
                                     "y": table[:, 3], "z": table[:, 4]}, schema=schema))
            if sum(len(t) for t in pending) >= ROWS_PER_GROUP:
                writer.write_table(pa.concat_tables(pending), row_group_size=ROWS_PER_GROUP)
                pending = []
        if pending:
            writer.write_table(pa.concat_tables(pending), row_group_size=ROWS_PER_GROUP)
        writer.close()
    return {"rows": rows, "trajectories": next_id, "links": links}


def tracked_files(plan: PtvPlan, frame: int) -> list[str]:
    """Upstream's files of one frame after tracking, relative to the output folder."""
    return [f"res/ptv_is.{frame}", f"res/added.{frame}", *plan.experiment.frame_outputs(frame)]


def tracking_is_complete(plan: PtvPlan) -> bool:
    """Cheap check: the record matches the plan and every file it lists is intact (see ``records.intact``)."""
    return is_complete(plan.layout.root, TRACKING, plan.tracking_fingerprint)
