"""Charts drawn on the server as inline SVG: a sparkline and a line chart with a target line.

Nothing is fetched and nothing runs in the browser: a chart is markup, so a report file is
whole on its own, and a PDF renderer draws it as it is. A missing value (a null, an error)
is a gap in the line, never a zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from .markup import Html, element, number


@dataclass(frozen=True)
class Point:
    """One part of a series: its period's label, the value (None: none), the target line's value there."""

    label: str
    value: float | None
    target: float | None = None


Format = Callable[[float | None], str]


@dataclass(frozen=True)
class _Scale:
    """Maps values to y and part indexes to x inside a box of ``width`` × ``height`` with margins."""

    low: float
    high: float
    count: int
    left: float
    right: float
    top: float
    bottom: float

    def x(self, index: int) -> float:
        if self.count == 1:
            return round((self.left + self.right) / 2, 2)
        return round(self.left + (self.right - self.left) * index / (self.count - 1), 2)

    def y(self, value: float) -> float:
        return round(self.bottom - (self.bottom - self.top) * (value - self.low) / (self.high - self.low), 2)


def _bounds(values: Sequence[float]) -> tuple[float, float]:
    """The range a chart shows: the values' own, widened when they are all equal (a flat line mid-box)."""
    low, high = min(values), max(values)
    if low == high:
        pad = abs(low) * 0.1 or 1.0
        return low - pad, high + pad
    return low, high


def runs(values: Sequence[float | None]) -> list[list[int]]:
    """Indexes of the consecutive non-null values: a line is drawn through each run, gaps stay open."""
    found: list[list[int]] = []
    for index, value in enumerate(values):
        if value is None:
            continue
        if found and found[-1][-1] == index - 1:
            found[-1].append(index)
        else:
            found.append([index])
    return found


def _line(values: Sequence[float | None], scale: _Scale, css: str) -> list[Html]:
    """A polyline per run of two values or more; a lone value (nulls both sides) is a dot."""
    shapes = []
    for run in runs(values):
        if len(run) == 1:
            i = run[0]
            shapes.append(element("circle", cx=scale.x(i), cy=scale.y(values[i]), r=2, class_=f"{css} lone"))
        else:
            points = " ".join(f"{scale.x(i)},{scale.y(values[i])}" for i in run)
            shapes.append(element("polyline", points=points, class_=css, fill="none"))
    return shapes


def sparkline(points: Sequence[Point], fmt: Format, *, width: int = 160, height: int = 36) -> Html:
    """A small line of the values, the last one marked; the title lists each period's value for a hover."""
    values = [p.value for p in points]
    shown = [v for v in values if v is not None]
    summary = "; ".join(f"{p.label}: {fmt(p.value)}" for p in points)
    attrs = dict(viewBox=f"0 0 {width} {height}", class_="sparkline", role="img", data_points=len(shown),
                 preserveAspectRatio="none")
    if not shown:
        return element("svg", element("title", summary or "no values"), **attrs)
    low, high = _bounds(shown)
    scale = _Scale(low, high, len(points), 2, width - 4, 4, height - 4)
    last = max(i for i, v in enumerate(values) if v is not None)
    marker = element("circle", cx=scale.x(last), cy=scale.y(values[last]), r=2.5, class_="last")
    return element("svg", element("title", summary), *_line(values, scale, "spark"), marker, **attrs)


def line_chart(points: Sequence[Point], fmt: Format, *, width: int = 640, height: int = 240,
               title: str = "") -> Html:
    """The series with its axis labels, a dashed target line where a target applies, and a dot per value
    whose title gives its period and value."""
    values = [p.value for p in points]
    targets = [p.target for p in points]
    known = [v for v in (*values, *targets) if v is not None]
    attrs = dict(viewBox=f"0 0 {width} {height}", class_="chart", role="img",
                 data_points=sum(v is not None for v in values))
    if not known:
        return element("svg", element("title", f"{title}: no values"),
                       element("text", "no values in this series", x=width / 2, y=height / 2,
                               class_="empty", text_anchor="middle"), **attrs)
    low, high = _bounds(known)
    ticks = [(value, fmt(value)) for value in (high, (low + high) / 2, low)]
    # Room for the longest axis label (about 0.6 em a character at the 11-unit font), up to a third of the width.
    left = min(width / 3, 12 + 6.6 * max(len(label) for _, label in ticks))
    scale = _Scale(low, high, len(points), round(left, 1), width - 12, 12, height - 30)
    grid = []
    for value, label in ticks:
        y = scale.y(value)
        grid.append(element("line", x1=scale.left, x2=scale.right, y1=y, y2=y, class_="grid"))
        grid.append(element("text", label, x=scale.left - 6, y=y + 4, class_="axis", text_anchor="end"))
    every = max(1, -(-len(points) // 6))  # at most about six period labels fit under a phone-wide chart
    labels = [element("text", p.label, x=scale.x(i), y=height - 10, class_="axis", text_anchor="middle")
              for i, p in enumerate(points) if i % every == 0 or i == len(points) - 1]
    dots = [element("circle", element("title", f"{p.label}: {fmt(p.value)}"), cx=scale.x(i), cy=scale.y(p.value),
                    r=3, class_="dot", data_period=p.label, data_value=number(p.value))
            for i, p in enumerate(points) if p.value is not None]
    return element("svg", element("title", title), *grid, *_line(targets, scale, "target"),
                   *_line(values, scale, "series"), *dots, *labels, **attrs)
