"""Special files in the input tree: each is one recorded failure; the run neither hangs nor fills memory."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
import stat
import subprocess

from conftest import hex_recipe, luigi_command, luigi_env

from pipeline.engine import frames
from pipeline.kinds import trmph

PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2


def without_root_file_access() -> None:
    """In the child, before exec: drop root's right to ignore file permissions, so mode 000 holds for it too."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0):
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run_as_a_user(task: str, recipe, timeout: float) -> subprocess.CompletedProcess:
    """Luigi as a user runs it; as root, without the capabilities that bypass file permissions."""
    return subprocess.run(luigi_command(task, recipe), env=luigi_env(), capture_output=True, text=True,
                          timeout=timeout, preexec_fn=without_root_file_access if os.geteuid() == 0 else None)


def test_special_files_are_recorded_and_the_rest_is_processed(tmp_path, shared_data):
    data = tmp_path / "in"
    (data / "locked").mkdir(parents=True)
    shutil.copy(shared_data / "hex" / "selfplay_sample.trmph", data / "good.trmph")
    shutil.copy(shared_data / "hex" / "selfplay_sample.trmph", data / "locked" / "hidden.trmph")
    os.mkfifo(data / "fifo.trmph")
    os.mknod(data / "device.trmph", stat.S_IFCHR | 0o600, os.makedev(1, 5))  # what /dev/zero is
    os.symlink("/dev/zero", data / "zero.trmph")
    os.symlink("loop.trmph", data / "loop.trmph")
    os.symlink(data / "gone", data / "broken.trmph")
    os.symlink(".", data / "up.trmph")
    with open(data / "huge.trmph", "wb") as huge:
        huge.truncate(trmph.MAX_FILE_BYTES + 1)  # sparse: its size without its bytes
    (data / "locked").chmod(0)
    recipe = hex_recipe(tmp_path, data)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(data / "socket.trmph"))
        runs = [run_as_a_user("BuildDataset", recipe, timeout=180) for _ in range(2)]
    (data / "locked").chmod(0o755)
    for done in runs:
        assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "out-hex"
    stats = json.loads((out / "final" / "stats.json").read_text())
    failures = {f["file"]: (f["line"], f["error"], f["message"]) for f in stats["failures"]["records"]}
    assert failures == {
        "fifo.trmph": (None, "NotAFile", "not a regular file (FIFO)"),
        "socket.trmph": (None, "NotAFile", "not a regular file (socket)"),
        "device.trmph": (None, "NotAFile", "not a regular file (character device)"),
        "zero.trmph": (None, "NotAFile", "not a regular file (character device)"),
        "loop.trmph": (None, "NotAFile", "symbolic link loop"),
        "broken.trmph": (None, "NotAFile", "broken symbolic link: its target does not exist"),
        "up.trmph": (None, "NotAFile", "symbolic link to a folder (links to folders are not followed)"),
        "locked/": (None, "NotAFile", "folder not readable: Permission denied"),
        "huge.trmph": (None, "FileTooLarge", f"file is {trmph.MAX_FILE_BYTES + 1} bytes, more than the trmph "
                                             f"limit of {trmph.MAX_FILE_BYTES}"),
    }
    assert stats["files"] == {"discovered": 10, "processed": 1, "failed": 9}
    assert stats["records"] == {"processed": 5, "failed": 0}
    assert stats["rows"]["total"] == 356, "the good file's 5 games, as upstream counts them"
    kept = []
    for path in sorted((out / "intermediate").glob("*.frames")):
        with open(path, "rb") as handle:
            kept += [frame.meta["file"] for frame in frames.scan(handle)[0]]
    assert kept == ["good.trmph"], "refusals are not kept"
