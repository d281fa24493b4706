"""Discovery rules: pattern, nested folders, hidden files, special files, links and pruned folders."""

from __future__ import annotations

import os
import socket

import pytest

from pipeline.engine.discovery import discover, folder_filter, glob_regex


def test_discovery_lists_matching_files_sorted_with_their_stat(tmp_path):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / ".hidden-dir").mkdir()
    for name in ("z.trmph", "a.trmph", "b/deep/c.trmph", "b/notes.txt", ".secret.trmph", ".hidden-dir/d.trmph"):
        (tmp_path / name).write_text(name)
    os.symlink(tmp_path / "b", tmp_path / "loop")  # a symlinked folder is not followed
    os.symlink(tmp_path / "missing", tmp_path / "broken.trmph")
    found = discover(tmp_path, "**/*.trmph")
    assert [f.relative for f in found] == [".hidden-dir/d.trmph", "a.trmph", "b/deep/c.trmph", "broken.trmph",
                                           "z.trmph"]
    by_name = {f.relative: f for f in found}
    assert by_name["broken.trmph"].size == -1
    stat = (tmp_path / "b" / "deep" / "c.trmph").stat()
    assert (by_name["b/deep/c.trmph"].size, by_name["b/deep/c.trmph"].mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    assert [f.relative for f in discover(tmp_path, "*.trmph")] == ["a.trmph", "broken.trmph", "z.trmph"]


def test_special_files_are_listed_with_their_problem_and_never_opened(tmp_path):
    (tmp_path / "real.trmph").write_text("#13,a1 b\n")
    os.mkfifo(tmp_path / "fifo.trmph")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock.trmph"))
        os.symlink("/dev/zero", tmp_path / "zero.trmph")
        os.symlink("loop.trmph", tmp_path / "loop.trmph")
        os.symlink(tmp_path / "missing", tmp_path / "broken.trmph")
        os.symlink(".", tmp_path / "up.trmph")
        found = {f.relative: f.problem for f in discover(tmp_path, "*.trmph")}
    assert found == {
        "real.trmph": None,
        "fifo.trmph": "not a regular file (FIFO)",
        "sock.trmph": "not a regular file (socket)",
        "zero.trmph": "not a regular file (character device)",
        "loop.trmph": "symbolic link loop",
        "broken.trmph": "broken symbolic link: its target does not exist",
        "up.trmph": "symbolic link to a folder (links to folders are not followed)",
    }


@pytest.mark.parametrize("pattern, folder, holds", [
    ("*.trmph", "a/", False),
    ("a/*.trmph", "a/", True),
    ("a/*.trmph", "b/", False),
    ("a/*.trmph", "a/b/", False),
    ("*/x/*.csv", "q/x/", True),
    ("*/x/*.csv", "q/y/", False),
    ("a?/**/*.csv", "ab/c/d/", True),
    ("a?/**/*.csv", "b/", False),
    ("**/*.trmph", "any/deep/folder/", True),
    ("games/*_games/*.csv", "games/2_games/", True),
    ("games/*_games/*.csv", "games/2_games/sub/", False),
])
def test_only_folders_that_can_hold_a_match_are_entered(pattern, folder, holds):
    assert folder_filter(pattern)(folder) is holds


def test_pruned_folders_change_nothing_found(tmp_path):
    for name in ("a/x.csv", "a/b/x.csv", "c/x.csv", "x.csv", "a/b/c/x.csv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("1")
    walked = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.csv"))
    for pattern in ("*.csv", "a/*.csv", "a/*/x.csv", "**/x.csv", "?/**/*.csv"):
        expected = [name for name in walked if glob_regex(pattern).match(name)]
        assert [f.relative for f in discover(tmp_path, pattern)] == expected, pattern
