"""Discovery rules: pattern, nested folders, hidden files, symlinked folders and broken links."""

from __future__ import annotations

import os

from pipeline.engine.discovery import discover


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
