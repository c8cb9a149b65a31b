"""The chart specs `warden.js` draws (with uPlot): x values, and series of y values over them.

They go to the page as JSON (`tojson`), so they are typed dicts: a key left out takes the
script's default.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class Series(TypedDict):
    label: str
    values: list[float | None]
    color: NotRequired[str]
    scale: NotRequired[str]  # "y2": against the right-hand axis


class Chart(TypedDict):
    x: list[int]  # unix seconds when `time`, else steps
    series: list[Series]
    time: NotRequired[bool]
    xLabel: NotRequired[str]
    yLabel: NotRequired[str]
    y2Label: NotRequired[str]
