"""The report's SVG charts: round ticks, data drawn to scale, valid and deterministic SVG."""

from __future__ import annotations

import math
import random
from xml.etree import ElementTree

import pytest

from pipeline.engine.charts import LABEL_CHARS, Panel, nice_ticks, render, tick_label

SVG = "{http://www.w3.org/2000/svg}"


def parse(text: str) -> ElementTree.Element:
    root = ElementTree.fromstring(text)
    assert root.tag == f"{SVG}svg"
    return root


def data_rects(root: ElementTree.Element) -> list[ElementTree.Element]:
    """The bars: every rect but the background, the frame and the legend's boxes (10 x 10)."""
    return [r for r in root.iter(f"{SVG}rect") if r.get("fill") not in ("white", "none")
            and (r.get("width"), r.get("height")) != ("10", "10")]


def test_ticks_are_round_evenly_spaced_and_cover_the_range():
    generator = random.Random(7)
    for _ in range(500):
        span = generator.uniform(1, 10) * 10.0 ** generator.randint(-6, 6)
        low = generator.uniform(-100, 100) * span * 10 ** generator.randint(0, 3)  # values up to 1e5 spans
        high = low + span
        ticks = nice_ticks(low, high)
        assert ticks[0] <= low + abs(low) * 1e-9 and ticks[-1] >= high - abs(high) * 1e-9, (low, high, ticks)
        assert 3 <= len(ticks) <= 11, (low, high, ticks)
        steps = {round(b - a, 9 - math.floor(math.log10(b - a))) for a, b in zip(ticks, ticks[1:], strict=False)}
        assert len(steps) == 1, ticks
        (step,) = steps
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5)), (step, ticks)


def test_ticks_of_an_empty_range_and_refused_limits():
    assert nice_ticks(0, 0) == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert nice_ticks(4, 4)[0] <= 4 <= nice_ticks(4, 4)[-1]
    assert nice_ticks(0, 1) == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match="not finite"):
        nice_ticks(0, math.inf)


def test_tick_labels():
    assert [tick_label(v) for v in (0.0, 1500.0, 0.25, 2.5e7, -3.0)] == ["0", "1,500", "0.25", "2.5e+07", "-3"]


def test_bars_are_drawn_to_scale_from_zero():
    panel = Panel("Split sizes", ylabel="rows")
    panel.bars([0, 1, 2], [1_734_000, 215_000, 0])
    root = parse(render([panel], 540, 290))
    heights = [float(r.get("height")) for r in data_rects(root)]
    bottoms = {round(float(r.get("y")) + float(r.get("height")), 1) for r in data_rects(root)}
    assert heights[2] == 0 and heights[0] / heights[1] == pytest.approx(1_734_000 / 215_000, rel=0.01)
    assert len(bottoms) == 1, "every bar stands on the same baseline"
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "Split sizes" in texts and "rows" in texts and "0" in texts


def test_horizontal_bars_name_each_row_and_cut_long_names():
    reasons = {"ValueError": 3, "BadInputError <bad> & worse": 1, "x" * 80: 2}
    panel = Panel("Failures by reason", xlabel="failures")
    panel.hbars(list(reasons), list(reasons.values()))
    root = parse(render([panel], 630, 290))
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "ValueError" in texts and "BadInputError <bad> & worse" in texts  # escaped, read back as written
    assert "x" * (LABEL_CHARS - 1) + "…" in texts
    widths = [float(r.get("width")) for r in data_rects(root)]
    assert widths[0] / widths[1] == pytest.approx(3, rel=0.01) and widths[2] / widths[1] == pytest.approx(2, rel=0.01)


def test_lines_steps_legend_and_several_panels():
    left = Panel("Throughput", xlabel="seconds", ylabel="records / s")
    left.line([0.5], [1200.0], label="only point")  # one point: a range is made around it
    right = Panel("Histogram")
    right.stairs([0.1, 0.5, 0.4], [0.0, 1.0, 2.0, 3.0], label="train")
    right.stairs([0.2, 0.4, 0.4], [0.0, 1.0, 2.0, 3.0], label="val")
    text = render([left, right], 990, 340)
    root = parse(text)
    lines = list(root.iter(f"{SVG}polyline"))
    assert len(lines) == 3 and len(lines[1].get("points").split()) == 6  # 3 steps: 2 points each
    assert len(list(root.iter(f"{SVG}circle"))) == 1
    assert {"only point", "train", "val"} <= {t.text for t in root.iter(f"{SVG}text")}
    assert text == render([left, right], 990, 340), "same data, same bytes"


def test_a_message_instead_of_data():
    root = parse(render([Panel("Failures by reason", xlabel="failures", message="no failures")], 630, 290))
    assert [t.text for t in root.iter(f"{SVG}text")] == ["Failures by reason", "no failures", "failures"]
    assert not data_rects(root)


def test_values_that_are_not_finite_are_left_out():
    bars = Panel("Duration per batch", integer_x=True)
    bars.bars([0, 1, 2], [1.0, math.nan, 3.0])
    line = Panel("Throughput")
    line.line([0.0, 1.0, 2.0], [5.0, math.inf, 7.0])
    empty = Panel("Nothing finite")
    empty.line([0.0], [math.nan])
    root = parse(render([bars, line, empty], 990, 340))
    heights = [float(r.get("height")) for r in data_rects(root)]
    assert len(heights) == 2 and heights[1] / heights[0] == pytest.approx(3, rel=0.01)
    points = [p.get("points") for p in root.iter(f"{SVG}polyline")]
    assert len(points[0].split()) == 2 and points[1] == ""
    assert "nan" not in ElementTree.tostring(root).decode().lower()
