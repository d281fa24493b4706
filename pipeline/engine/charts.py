"""Charts as SVG text, drawn without a plotting library: bars, lines and steps on linear axes.

Enough for the run report: a chart is one or more panels side by side, each with a title,
axis labels, ticks at round values, its series and a legend. The output depends on the
data only (same data, same bytes) and takes well under a millisecond per panel, where a
plotting library costs half a second to import and a tenth of a second per PNG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
"""Series colours, in order (matplotlib's ``tab10``, so the report looks as it did)."""
FONT = 11
CHAR = 0.6 * FONT
"""Width of a character of the chart's font, near enough to lay out labels."""
LABEL_CHARS = 32
"""Category labels (a failure reason) are cut to this many characters, with an ellipsis."""


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering ``[low, high]``: steps of 1, 2, 2.5 or 5 times a power of ten, about ``count``."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"axis limits {low}, {high} are not finite")
    if high <= low:
        low, high = (low - 1, high + 1) if low == 0 else (low - abs(low) / 2, high + abs(high) / 2)
    rough = (high - low) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= rough)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [i * step for i in range(first, last + 1)]


def tick_label(value: float) -> str:
    """A tick value as text: ``1,500``, ``0.25``, ``2e+07``."""
    if value == int(value) and abs(value) < 1e7:
        return f"{int(value):,}"
    return f"{value:.4g}"


def _cut(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[:LABEL_CHARS - 1] + "…"


@dataclass(frozen=True)
class Rect:
    """A bar, in data coordinates."""

    x0: float
    y0: float
    x1: float
    y1: float
    color: str


@dataclass(frozen=True)
class Line:
    """A polyline through points, in data coordinates; ``from_zero``: its axis starts at 0 (a histogram)."""

    xs: list[float]
    ys: list[float]
    color: str
    markers: bool
    from_zero: bool = False


@dataclass
class Panel:
    """One plot area: its series in data coordinates, titles, and (for bars by name) its categories."""

    title: str
    xlabel: str = ""
    ylabel: str = ""
    message: str = ""
    """Text shown in the middle instead of data (``no failures``)."""
    shapes: list[Rect | Line] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    xticks: list[tuple[float, str]] | None = None
    yticks: list[tuple[float, str]] | None = None
    integer_x: bool = False

    def _series(self, label: str | None, color: str) -> None:
        if label:
            self.legend.append((label, color))

    def bars(self, x: Sequence[float], heights: Sequence[float], width: float = 0.8,
             color: str | Sequence[str] = COLORS[0], label: str | None = None) -> None:
        """Vertical bars centred on ``x``; ``color`` is one colour or one per bar."""
        colors = [color] * len(x) if isinstance(color, str) else list(color)
        for center, height, each in zip(x, heights, colors, strict=True):
            self.shapes.append(Rect(center - width / 2, 0.0, center + width / 2, float(height), each))
        self._series(label, colors[0] if colors else COLORS[0])

    def hbars(self, names: Sequence[str], values: Sequence[float], color: str = COLORS[0]) -> None:
        """Horizontal bars, one per name, the first at the top."""
        count = len(names)
        for row, value in enumerate(values):
            y = count - 1 - row
            self.shapes.append(Rect(0.0, y - 0.4, float(value), y + 0.4, color))
        self.yticks = [(count - 1 - row, _cut(str(name))) for row, name in enumerate(names)]

    def line(self, x: Sequence[float], y: Sequence[float], color: str = COLORS[0], label: str | None = None,
             markers: bool = True) -> None:
        """A line through the points, with a dot on each (``markers``)."""
        self.shapes.append(Line([float(v) for v in x], [float(v) for v in y], color, markers))
        self._series(label, color)

    def stairs(self, values: Sequence[float], edges: Sequence[float], color: str = COLORS[0],
               label: str | None = None) -> None:
        """A histogram's outline: ``values[i]`` between ``edges[i]`` and ``edges[i + 1]``."""
        x = [float(edges[0])] + [float(e) for e in edges[1:-1] for _ in (0, 1)] + [float(edges[-1])]
        y = [float(v) for v in values for _ in (0, 1)]
        self.shapes.append(Line(x, y, color, markers=False, from_zero=True))
        self._series(label, color)

    def axes(self) -> tuple[tuple[float, float], list[float], tuple[float, float], list[float]]:
        """The x range and tick values, then the y ones: the data's extent (bars and steps from 0) with a
        margin, ticks at the round values inside it, or the categories the panel names."""
        xs, ys = [], []
        for shape in self.shapes:
            xs += [shape.x0, shape.x1] if isinstance(shape, Rect) else shape.xs
            ys += [shape.y0, shape.y1] if isinstance(shape, Rect) else shape.ys
        from_zero = any(isinstance(shape, Rect) or shape.from_zero for shape in self.shapes)  # bars, steps
        x_range, y_range = _extent(xs, from_zero and bool(self.yticks)), _extent(ys, from_zero and not self.yticks)
        x_ticks = ([v for v, _ in self.xticks] if self.xticks else
                   [t for t in _inside(x_range) if not self.integer_x or t == int(t)])
        if self.yticks:
            values = [v for v, _ in self.yticks]
            return x_range, x_ticks, (min(values) - 0.6, max(values) + 0.6), values
        return x_range, x_ticks, y_range, _inside(y_range)


def _extent(values: list[float], from_zero: bool, margin: float = 0.04) -> tuple[float, float]:
    """The axis range of the finite ``values`` with a margin each side (none below a baseline at 0)."""
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    if from_zero:
        low, high = min(low, 0.0), max(high, 0.0)
    span = high - low or abs(high) or 1.0
    return (low if from_zero and low == 0 else low - margin * span), high + margin * span


def _inside(limits: tuple[float, float]) -> list[float]:
    """The round tick values within ``limits``."""
    low, high = limits
    slack = (high - low) * 1e-9
    return [t for t in nice_ticks(low, high) if low - slack <= t <= high + slack]


def render(panels: Sequence[Panel], width: int, height: int) -> str:
    """An SVG document of ``panels`` side by side, ``width`` × ``height`` pixels in all."""
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" font-size="{FONT}">',
             f'<rect width="{width}" height="{height}" fill="white"/>']
    share = width / len(panels)
    for index, panel in enumerate(panels):
        parts += _panel(panel, index * share, share, height)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _text(x: float, y: float, text: str, anchor: str = "middle", extra: str = "") -> str:
    return f'<text x="{_num(x)}" y="{_num(y)}" text-anchor="{anchor}"{extra}>{escape(text)}</text>'


def _panel(panel: Panel, left: float, width: float, height: float) -> list[str]:
    (xa, xb), x_ticks, (ya, yb), y_ticks = panel.axes()
    x_labels = dict(panel.xticks) if panel.xticks else {t: tick_label(t) for t in x_ticks}
    y_labels = dict(panel.yticks) if panel.yticks else {t: tick_label(t) for t in y_ticks}
    widest = max((len(label) for label in y_labels.values()), default=1)
    x0 = left + 14 + (FONT + 6 if panel.ylabel else 0) + widest * CHAR
    x1, y0 = left + width - 14, 26.0 + (FONT + 8 if panel.legend else 0)
    y1 = height - 24 - (FONT + 6 if panel.xlabel else 0)

    def sx(value: float) -> float:
        return x0 + (value - xa) / (xb - xa) * (x1 - x0)

    def sy(value: float) -> float:
        return y1 - (value - ya) / (yb - ya) * (y1 - y0)

    out = [_text((x0 + x1) / 2, 16, panel.title, extra=' font-weight="bold"')]
    for tick in [] if panel.message else x_ticks:
        out.append(f'<line x1="{_num(sx(tick))}" y1="{_num(y1)}" x2="{_num(sx(tick))}" y2="{_num(y1 + 4)}" '
                   f'stroke="black"/>')
        out.append(_text(sx(tick), y1 + 6 + FONT, x_labels[tick]))
    for tick in [] if panel.message else y_ticks:
        if panel.yticks is None:
            out.append(f'<line x1="{_num(x0)}" y1="{_num(sy(tick))}" x2="{_num(x1)}" y2="{_num(sy(tick))}" '
                       f'stroke="#e5e5e5"/>')
        out.append(_text(x0 - 6, sy(tick) + FONT / 3, y_labels[tick], anchor="end"))
    for shape in panel.shapes:  # a value that is not finite (NaN, inf) is left out
        if isinstance(shape, Rect):
            xl, yl, xh, yh = shape.x0, shape.y0, shape.x1, shape.y1
            if not all(math.isfinite(v) for v in (xl, yl, xh, yh)):
                continue
            out.append(f'<rect x="{_num(sx(min(xl, xh)))}" y="{_num(sy(max(yl, yh)))}" '
                       f'width="{_num(abs(sx(xh) - sx(xl)))}" height="{_num(abs(sy(yh) - sy(yl)))}" '
                       f'fill="{shape.color}"/>')
        else:
            kept = [(x, y) for x, y in zip(shape.xs, shape.ys, strict=True) if math.isfinite(x) and math.isfinite(y)]
            points = " ".join(f"{_num(sx(x))},{_num(sy(y))}" for x, y in kept)
            out.append(f'<polyline points="{points}" fill="none" stroke="{shape.color}" stroke-width="1.5"/>')
            if shape.markers:
                out += [f'<circle cx="{_num(sx(x))}" cy="{_num(sy(y))}" r="3" fill="{shape.color}"/>'
                        for x, y in kept]
    out.append(f'<rect x="{_num(x0)}" y="{_num(y0)}" width="{_num(x1 - x0)}" height="{_num(y1 - y0)}" '
               f'fill="none" stroke="black"/>')
    if panel.message:
        out.append(_text((x0 + x1) / 2, (y0 + y1) / 2, panel.message))
    if panel.xlabel:
        out.append(_text((x0 + x1) / 2, height - 8, panel.xlabel))
    if panel.ylabel:
        middle = (y0 + y1) / 2
        out.append(_text(left + 4 + FONT, middle, panel.ylabel, extra=f' transform="rotate(-90 '
                                                                        f'{_num(left + 4 + FONT)} {_num(middle)})"'))
    x = x1 - sum(len(label) * CHAR + 30 for label, _ in panel.legend)  # one row, right-aligned under the title
    for label, color in panel.legend:
        out.append(f'<rect x="{_num(x)}" y="{_num(y0 - FONT - 8)}" width="10" height="10" fill="{color}"/>')
        out.append(_text(x + 14, y0 - 9, label, anchor="start"))
        x += len(label) * CHAR + 30
    return out
