"""An experiment's curves as SVG drawn on the server: per measure, each arm's cumulative mean
over time, and each treatment's difference from the control with its always-valid interval
as a shaded band around it (the `series` of the results document).

The figures are placed here (coordinates, path data, tick labels); the template only writes
them out, so the page needs no script for them and a test can read the band from the DOM.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from app.experiments.read_models import CurvePoint

WIDTH, HEIGHT = 640, 230
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 12, 34
# One colour per arm, in the arms' order (the control first); readable on white.
PALETTE = ("#1d4ed8", "#b91c1c", "#15803d", "#7c3aed", "#b45309", "#0e7490")


@dataclass(frozen=True)
class Line:
    label: str
    color: str
    path: str  # SVG path data
    last: str  # the last value, as shown


@dataclass(frozen=True)
class Band:
    label: str
    color: str
    path: str  # a closed polygon per run of points with a finite interval


@dataclass(frozen=True)
class Tick:
    at: float  # pixel
    label: str


@dataclass(frozen=True)
class CurveChart:
    """One SVG chart: lines (and bands) over time, with its axes' ticks."""

    key: str
    title: str
    description: str
    lines: list[Line]
    bands: list[Band] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    zero: float | None = None  # pixel row of y = 0, drawn for differences
    width: int = WIDTH
    height: int = HEIGHT


class _Scale:
    def __init__(self, xs: Sequence[float], ys: Sequence[float], with_zero: bool) -> None:
        values = [*ys, 0.0] if with_zero else list(ys)
        low, high = (min(values), max(values)) if values else (0.0, 1.0)
        if high - low < 1e-12:
            low, high = low - 0.5 if low else -0.5, high + 0.5 if high else 0.5
        pad = (high - low) * 0.06
        self.y0, self.y1 = low - pad, high + pad
        self.x0, self.x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
        if self.x1 == self.x0:
            self.x0, self.x1 = self.x0 - 1800, self.x1 + 1800

    def x(self, value: float) -> float:
        share = (value - self.x0) / (self.x1 - self.x0)
        return round(LEFT + share * (WIDTH - LEFT - RIGHT), 1)

    def y(self, value: float) -> float:
        """The pixel row of `value`, held within the plot (a band may run past its edge)."""
        share = min(1.04, max(-0.04, (value - self.y0) / (self.y1 - self.y0)))
        return round(HEIGHT - BOTTOM - share * (HEIGHT - TOP - BOTTOM), 1)


def _path(points: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{'M' if i == 0 else 'L'}{x},{y}" for i, (x, y) in enumerate(points))


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _y_ticks(scale: _Scale, show: _Format) -> list[Tick]:
    return [
        Tick(scale.y(v), show(v))
        for v in (scale.y0 + (scale.y1 - scale.y0) * k / 4 for k in range(5))
    ]


def _x_ticks(scale: _Scale) -> list[Tick]:
    def label(seconds: float) -> str:
        return datetime.fromtimestamp(seconds, UTC).strftime("%m-%d %H:%M")

    middle = (scale.x0 + scale.x1) / 2
    return [Tick(scale.x(v), label(v)) for v in (scale.x0, middle, scale.x1)]


class _Format:
    """How a measure's values read: a share in %, milliseconds, or a plain number."""

    def __init__(self, measure: str, difference: bool = False) -> None:
        self.measure = measure
        self.difference = difference

    def __call__(self, value: float) -> str:
        sign = "+" if self.difference and value > 0 else ""
        if self.measure.endswith("_rate"):
            unit = " pp" if self.difference else "%"
            return f"{sign}{100 * value:.1f}{unit}"
        if self.measure.endswith("_ms"):
            return f"{sign}{value:.1f} ms"
        return f"{sign}{value:.4g}"


def curves(
    measure: str, points: list[CurvePoint], arms: Sequence[str], control: str
) -> list[CurveChart]:
    """The mean chart of `measure` (every arm) and, when there is a treatment, its
    difference chart; `arms` in order, the control first."""
    if not points:
        return []
    colors = {arm: PALETTE[i % len(PALETTE)] for i, arm in enumerate(arms)}
    xs = [p.until / 1e9 for p in points]
    means: dict[str, list[tuple[float, float]]] = {}
    for x, point in zip(xs, points, strict=True):
        for arm, found in point.arms.items():
            means.setdefault(arm, []).append((x, found.mean))
    show = _Format(measure)
    scale = _Scale(xs, [v for line in means.values() for _, v in line], with_zero=False)
    mean_chart = CurveChart(
        key=f"{measure}-mean",
        title=f"{measure}: cumulative mean per arm",
        description=f"Each arm's {measure} over all its requests so far, at each time.",
        lines=[
            Line(arm, colors.get(arm, PALETTE[0]),
                 _path([(scale.x(x), scale.y(v)) for x, v in means[arm]]), show(means[arm][-1][1]))
            for arm in arms
            if arm in means
        ],
        x_ticks=_x_ticks(scale),
        y_ticks=_y_ticks(scale, show),
    )
    treatments = [a for a in arms if a != control]
    differences = _differences(xs, points, treatments)
    if not differences:
        return [mean_chart]
    scale = _Scale(xs, _framed(measure, differences), with_zero=True)
    shown = _Format(measure, difference=True)
    lines, bands = [], []
    for arm, rows in differences.items():
        color = colors.get(arm, PALETTE[1])
        lines.append(
            Line(f"{arm} \u2212 {control}", color,
                 _path([(scale.x(x), scale.y(d)) for x, d, _, _ in rows]), shown(rows[-1][1]))
        )  # fmt: skip
        bands.append(Band(f"{arm} interval", color, _band(scale, rows)))
    return [
        mean_chart,
        CurveChart(
            key=f"{measure}-difference",
            title=f"{measure}: difference from {control}, with its interval",
            description=(
                f"Each treatment's {measure} minus the control's over the requests so far, "
                "with its always-valid confidence interval as a band; a band that leaves zero "
                "is a verdict."
            ),
            lines=lines,
            bands=bands,
            x_ticks=_x_ticks(scale),
            y_ticks=_y_ticks(scale, shown),
            zero=scale.y(0.0),
        ),
    ]


_Row = tuple[float, float, float | None, float | None]  # x, difference, ci_low, ci_high
# An early interval wider than this many times the latest one is cut at the chart's edge:
# drawn whole, the first hours' wide intervals would flatten the rest of the curve.
_WIDEST = 4.0


def _framed(measure: str, differences: dict[str, list[_Row]]) -> list[float]:
    """The values the difference chart's y axis spans: every difference, and the interval
    bounds not much wider than the latest interval (a rate's within ±100 pp)."""
    values = []
    for rows in differences.values():
        values += [d for _, d, _, _ in rows]
        last = rows[-1]
        latest = (last[3] - last[2]) if last[2] is not None and last[3] is not None else None
        for _, _, low, high in rows:
            if low is None or high is None:
                continue
            if latest is not None and latest > 0 and high - low > _WIDEST * latest:
                continue
            values += [low, high]
    if measure.endswith("_rate"):
        values = [min(1.0, max(-1.0, v)) for v in values]
    return values


def _differences(
    xs: list[float], points: list[CurvePoint], treatments: list[str]
) -> dict[str, list[_Row]]:
    found: dict[str, list[_Row]] = {}
    for x, point in zip(xs, points, strict=True):
        for arm in treatments:
            compared = point.differences.get(arm)
            if compared is None or not _finite(compared.difference):
                continue
            low = compared.ci_low if _finite(compared.ci_low) else None
            high = compared.ci_high if _finite(compared.ci_high) else None
            found.setdefault(arm, []).append((x, float(compared.difference or 0.0), low, high))
    return found


def _band(scale: _Scale, rows: list[_Row]) -> str:
    """Closed polygons over each run of consecutive points whose interval is finite."""
    runs: list[list[_Row]] = [[]]
    for row in rows:
        if row[2] is None or row[3] is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append(row)
    parts = []
    for run in runs:
        if not run:
            continue
        upper = [(scale.x(x), scale.y(hi)) for x, _, _, hi in run if hi is not None]
        lower = [(scale.x(x), scale.y(lo)) for x, _, lo, _ in reversed(run) if lo is not None]
        if len(run) == 1:  # one point: a thin bar, so the interval still shows
            (x, top), (_, bottom) = upper[0], lower[0]
            upper = [(x - 2, top), (x + 2, top)]
            lower = [(x + 2, bottom), (x - 2, bottom)]
        parts.append(_path(upper + lower) + " Z")
    return " ".join(parts)
