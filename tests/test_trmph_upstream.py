"""Fidelity: the trmph kind against upstream hex_ai's own outputs (data/hex/upstream, see its README)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.kinds import trmph

DEFAULTS = {name: setting.default for name, setting in trmph.KIND.settings.items()}
AS_UPSTREAM = {**DEFAULTS, "legacy_winners": False, "board_size_mismatch": "ignore", "repeated_moves": "truncate"}
STEMS = ("edge_cases", "selfplay_sample", "twoNetGames_sample")


def input_path(shared_data: Path, stem: str) -> Path:
    if stem == "edge_cases":
        return shared_data / "hex" / "upstream" / "inputs" / "edge_cases.trmph.txt"
    return shared_data / "hex" / f"{stem}.trmph"


def upstream_positions(shared_data: Path, selector: str, stem: str) -> dict[int, set]:
    """Upstream's rows per physical line, as a set of (board, policy cell or -1, value, player, moves played)."""
    with np.load(shared_data / "hex" / "upstream" / "out" / selector / f"{stem}.npz", allow_pickle=False) as data:
        assert ((data["policy"].sum(axis=1) == 1) | data["policy_none"]).all(), "one-hot policy or none"
        policy = np.where(data["policy_none"], -1, data["policy"].argmax(axis=1))
        rows = zip(data["source_line"].tolist(), data["boards"].astype(np.uint8), policy.tolist(),
                   data["value"].tolist(), data["player_to_move"].tolist(), data["move_index"].tolist(), strict=True)
        games: dict[int, set] = {}
        for line, board, *rest in rows:
            games.setdefault(line, set()).add((board.tobytes(), *rest))
    return games


def our_positions(result: trmph.FileResult) -> dict[int, set]:
    a = result.arrays
    games: dict[int, set] = {}
    for line, board, *rest in zip(a["source_line"].tolist(), a["X"], a["policy"].tolist(), a["value"].tolist(),
                                  a["player_to_move"].tolist(), a["source_move"].tolist(), strict=True):
        games.setdefault(line, set()).add((board.tobytes(), *rest))
    return games


def upstream_outcomes(shared_data: Path, selector: str) -> dict[int, str]:
    games = json.loads((shared_data / "hex" / "upstream" / "out" / selector / "edge_cases.json").read_text())["games"]
    return {game["physical_line"]: "ok" if game["status"] == "ok" else "skipped" for game in games}


def our_outcomes(result: trmph.FileResult) -> dict[int, str]:
    outcomes = {e.line: "skipped" for e in result.errors if e.error != "RepeatedMove"}
    return outcomes | dict.fromkeys(result.arrays["source_line"].tolist(), "ok")


@pytest.mark.parametrize("selector", trmph.SELECTORS)
@pytest.mark.parametrize("stem", STEMS)
def test_rows_per_game_equal_upstreams(shared_data, selector, stem):
    """Every game gives upstream's positions (compared as sets: upstream shuffles them)."""
    result = trmph.read(input_path(shared_data, stem), {**AS_UPSTREAM, "position_selector": selector})
    ours, theirs = our_positions(result), upstream_positions(shared_data, selector, stem)
    assert sorted(ours) == sorted(theirs)
    for line in theirs:
        assert ours[line] == theirs[line], f"{stem} line {line}"
    assert len(result.arrays["X"]) == sum(map(len, theirs.values())), "no position twice"
    if stem == "edge_cases":
        assert len(result.arrays["X"]) == {"all": 397, "final": 20, "penultimate": 20}[selector]


@pytest.mark.parametrize("selector", trmph.SELECTORS)
def test_skip_decisions_line_by_line(shared_data, selector):
    """As upstream, but for comments; with the defaults, also legacy winners and other board sizes."""
    theirs = upstream_outcomes(shared_data, selector)
    path = input_path(shared_data, "edge_cases")
    as_upstream = trmph.read(path, {**AS_UPSTREAM, "position_selector": selector})
    ours = our_outcomes(as_upstream)
    differ = {line: (ours.get(line), theirs.get(line)) for line in ours.keys() | theirs.keys()
              if ours.get(line) != theirs.get(line)}
    assert differ == {24: (None, "skipped")}, "'# a comment line' is a comment here, a bad game upstream"
    assert [e.line for e in as_upstream.errors if e.error == "RepeatedMove"] == [1, 2, 3, 37], "upstream cuts silently"
    assert [e.line for e in as_upstream.errors if e.line == 41] == [41], "a lone CR does not end a line here"
    defaults = trmph.read(path, {**DEFAULTS, "position_selector": selector})
    ours = our_outcomes(defaults)
    differ = {line: (ours.get(line), theirs.get(line)) for line in ours.keys() | theirs.keys()
              if ours.get(line) != theirs.get(line)}
    assert differ == {6: ("ok", "skipped"), 7: ("ok", "skipped"), 24: (None, "skipped"), 12: ("skipped", "ok"),
                      13: ("skipped", "ok"), 14: ("skipped", "ok"), 16: ("skipped", "ok")}
    errors = {e.line: e.error for e in defaults.errors}
    assert {line: errors[line] for line in (12, 13, 14, 15, 16)} == dict.fromkeys((12, 13, 14, 15, 16),
                                                                                 "BoardSizeMismatch")
