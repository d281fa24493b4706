"""The batch file while its batch runs: one writer at a time, the frames of earlier runs kept, more appended.

See :mod:`pipeline.engine.frames` for the format. A crash leaves ``batch_NNNN.frames.partial``
with whole frames and perhaps a torn tail; the next writer keeps the whole frames that are
still current and goes on. The finished file (its index appended) is renamed into place.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from pipeline.engine import frames
from pipeline.engine.plan import Batch, Plan
from pipeline.engine.storage import atomic_open


@contextlib.contextmanager
def writer_lock(path: Path) -> Iterator[bool]:
    """Be the only writer of batch file ``path`` (an flock on ``.<name>.lock``, which NFS passes between hosts).

    Yields whether another writer held it first (then the batch may be complete already).
    The lock file is removed on release; a waiter that locked a removed file locks again.
    """
    lock = path.with_name(f".{path.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waited = True
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            if os.fstat(descriptor).st_ino == os.stat(lock).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(descriptor)
    try:
        yield waited
    finally:
        lock.unlink(missing_ok=True)
        os.close(descriptor)


class BatchFile:
    """The batch file being written (``.partial``): the frames kept from earlier runs, and appending more.

    An earlier complete batch file (stale: a file changed, a file to try again, another
    layout) becomes the partial, so its frames still current are kept. Frames that are not
    (a changed file's, a torn tail) are dropped: the kept ones are copied into a fresh
    partial when any stale one holds rows, so no dead rows stay at rest.
    """

    def __init__(self, plan: Plan, batch: Batch):
        self.path = plan.layout.batch(batch.index)
        self.partial = frames.partial_path(self.path)
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        if not self.partial.exists() and self.path.exists():
            os.replace(self.path, self.partial)
        wanted = set(batch.file_fingerprints)
        self.handle = open(self.partial, "r+b" if self.partial.exists() else "w+b")  # noqa: SIM115 - closed by finish
        found, self.end = frames.scan(self.handle)
        self.kept: dict[str, frames.Frame] = {}
        for frame in found:
            if frame.meta["fingerprint"] in wanted and _blobs_in_place(plan, frame.meta):
                self.kept[frame.meta["fingerprint"]] = frame
        if any(frame.meta["rows"] and self.kept.get(frame.meta["fingerprint"]) is not frame for frame in found):
            self._compact()
        self.handle.seek(self.end)
        self.handle.truncate()

    def _compact(self) -> None:
        """Rewrite the partial with the kept frames only."""
        with atomic_open(self.partial) as out:
            for frame in self.kept.values():
                out.write(frames.read_raw(self.handle, frame))
        self.handle.close()
        self.handle = open(self.partial, "r+b")  # noqa: SIM115 - closed by finish
        found, self.end = frames.scan(self.handle)
        self.kept = {frame.meta["fingerprint"]: frame for frame in found}

    def append(self, meta: dict, arrays: dict, codec: str) -> frames.Frame:
        """Append one file's frame (readable by the next run once written, whatever happens after)."""
        parts, stored = frames.encode(meta, arrays, codec)
        self.handle.seek(self.end)
        self.handle.writelines(parts)
        self.handle.flush()
        frame = frames.Frame(self.end, sum(len(part) for part in parts), stored)
        self.end += frame.size
        return frame

    def finish(self, spec: dict, entries: list[dict]) -> Path:
        """Append the index and rename the batch file into place."""
        frames.finish(self.handle, self.end, frames.index_frame(spec, entries))
        self.close()
        os.replace(self.partial, self.path)
        return self.path

    def close(self) -> None:
        self.handle.close()


def _blobs_in_place(plan: Plan, meta: dict) -> bool:
    """Whether the byte outputs a frame lists (a command's results under ``files/``) are there, of their sizes."""
    try:
        return all(plan.layout.file_blob(meta["file"], name).stat().st_size == size
                   for name, size in meta.get("blobs", {}).items())
    except OSError:
        return False
