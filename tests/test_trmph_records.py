"""Through the pipeline: a bad trmph line loses only itself, and a game cut at a repeat keeps its file."""

from __future__ import annotations

import json

from conftest import hex_recipe, run_luigi

from pipeline.kinds import trmph


def test_bad_lines_are_records_and_a_cut_game_keeps_its_file(tmp_path, shared_data):
    good = (shared_data / "hex" / "selfplay_sample.trmph").read_text().splitlines()
    data = tmp_path / "in"
    data.mkdir()
    (data / "cut.trmph").write_text("#13,a1b2a1c3 r\n")
    (data / "nul.trmph").write_bytes(f"{good[0]}\n#13,a1\0b2 b\n{good[1]}\n".encode())
    (data / "fake-comments.trmph").write_text("# a real comment\n#x,a1b2 b\n//a1b2 b\n")
    done = run_luigi("BuildDataset", hex_recipe(tmp_path, data, batch={"files_per_batch": 3}))
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads((tmp_path / "out-hex" / "final" / "stats.json").read_text())
    assert sorted((f["file"], f["line"], f["error"]) for f in stats["failures"]["records"]) == [
        ("fake-comments.trmph", 2, "BadGameRecord"), ("fake-comments.trmph", 3, "BadGameRecord"),
        ("nul.trmph", 2, "NotTextError")]
    assert [(w["file"], w["line"], w["error"]) for w in stats["warnings"]["records"]] == [
        ("cut.trmph", 1, "RepeatedMove")], "a cut game is kept, with a warning on its line"
    assert stats["warnings"]["by_reason"] == {"RepeatedMove": 1} and stats["records"]["failed"] == 3
    assert stats["files"] == {"discovered": 3, "processed": 2, "failed": 1}, "only the file with no game failed"
    assert stats["records"]["processed"] == 3
    positions = [trmph.parse_game(game, trmph.Rules())[0].size + 1 for game in good[:2]]
    assert stats["rows"]["total"] == 3 + sum(positions), "the cut game gives its 3 positions"
