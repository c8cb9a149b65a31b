"""A trace's span waterfall, one page at a time: the spans in tree order
(`app.store.trace_pages`), each with its bar's place on the trace's timeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from app.errors import BadRequest
from app.store import trace_pages
from app.store.trace_pages import PAGE, PagedSpan, TraceLayouts

STATUS = {0: "unset", 1: "ok", 2: "error"}
COLLAPSE_ABOVE = 1000  # spans: a bigger trace opens collapsed to its top levels


@dataclass(frozen=True)
class Row:
    span_id: str
    parent_span_id: str | None
    name: str
    depth: int
    start: int
    end: int
    status: str
    status_message: str | None
    service_name: str | None
    attributes: dict[str, Any]
    children: int
    below: int
    offset_pct: float
    width_pct: float

    @property
    def duration_ms(self) -> float:
        return (self.end - self.start) / 1e6


@dataclass(frozen=True)
class Waterfall:
    total: int
    page: int
    pages: int
    start: int
    end: int
    rows: list[Row]
    trace_total: int = 0

    @property
    def first_index(self) -> int:
        return self.page * PAGE


def _row(s: PagedSpan, start: int, span: int) -> Row:
    """A span's row, its bar placed on the timeline of the trace (`start`, `span` long)."""
    t0, t1 = s.start_time_unix_nano, s.end_time_unix_nano
    return Row(
        span_id=s.span_id, parent_span_id=s.parent_span_id, name=s.name, depth=s.depth,
        start=t0, end=t1, status=STATUS.get(s.status_code, str(s.status_code)),
        status_message=s.status_message, service_name=s.service_name, attributes=s.attributes,
        children=s.children, below=s.below, offset_pct=round(100 * (t0 - start) / span, 3),
        width_pct=round(max(100 * (t1 - t0) / span, 0.2), 3),
    )  # fmt: skip


def _levels(levels: str | None) -> int | None:
    if levels not in (None, "", "all") and not (levels or "").isdigit():
        raise BadRequest("levels: a number of levels, or all")
    return int(levels) if levels and levels.isdigit() else None


def waterfall(
    engine: Engine,
    layouts: TraceLayouts,
    project_id: int,
    trace_id: str,
    page: int = 0,
    focus: str | None = None,
    levels: str | None = None,
) -> Waterfall:
    """Page `page` of the trace's waterfall, or of the subtree under span `focus`, `levels`
    deep below its top (a number, or `all`); with no `levels`, a trace of more than
    `COLLAPSE_ABOVE` spans shows its top level only."""
    depth = _levels(levels)
    found = trace_pages.page_of(engine, layouts, project_id, trace_id, page, focus or None, depth)
    if levels is None and found.trace_total > COLLAPSE_ABOVE:
        found = trace_pages.page_of(engine, layouts, project_id, trace_id, page, focus or None, 1)
    span = max(found.end_unix_nano - found.start_unix_nano, 1)
    rows = [_row(s, found.start_unix_nano, span) for s in found.spans]
    return Waterfall(found.total, found.page, found.pages, found.start_unix_nano,
                     found.end_unix_nano, rows, found.trace_total)  # fmt: skip
