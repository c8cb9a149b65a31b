"""A trace's spans in tree order, one page at a time: a trace may hold tens of thousands.

The tree is ordered depth first (children by start time) from a light read of every span's
ids and times; only the spans of the page asked for are read whole. The order of a big
trace is kept in memory while its span count stays the same, so the next pages cost a
count and `PAGE` full rows, whatever the size of the trace.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select

from app.store.engine import read_connection
from app.store.tables import Span

PAGE = 200


@dataclass(frozen=True, slots=True)
class PagedSpan:
    """A span of a page, placed in its tree: its depth below the top shown, how many
    children it has and how many spans are under it in all."""

    span_id: str
    parent_span_id: str | None
    name: str
    depth: int
    start_time_unix_nano: int
    end_time_unix_nano: int
    status_code: int
    status_message: str | None
    service_name: str | None
    attributes: dict[str, Any]
    children: int
    below: int


@dataclass(frozen=True, slots=True)
class SpanPage:
    """One page of the spans shown (the whole trace, or a subtree of it)."""

    total: int  # spans shown, over every page
    page: int
    pages: int
    start_unix_nano: int  # the whole trace's first start and last end
    end_unix_nano: int
    spans: list[PagedSpan]
    trace_total: int  # spans of the whole trace


def order(
    skeleton: list[tuple[str, str | None, int]],
) -> tuple[list[str], dict[str, int], dict[str, int]]:
    """(span id, parent id, start) in start order -> span ids depth first, each span's depth
    and its number of children. A span whose parent is missing (or itself) is a root; ids
    that loop are placed once, as roots."""
    ids = {s for s, _, _ in skeleton}
    children: dict[str, list[str]] = {}
    roots: list[str] = []
    for span_id, parent, _ in skeleton:
        if parent and parent in ids and parent != span_id:
            children.setdefault(parent, []).append(span_id)
        else:
            roots.append(span_id)
    out: list[str] = []
    depth: dict[str, int] = {}
    placed: set[str] = set()
    for start in [*roots, *(s for s, _, _ in skeleton)]:
        if start in placed:
            continue
        stack = [(start, 0)]
        while stack:
            span_id, level = stack.pop()
            if span_id in placed:
                continue
            placed.add(span_id)
            out.append(span_id)
            depth[span_id] = level
            # Reversed onto the stack, so the earliest child comes out first.
            stack.extend((c, level + 1) for c in reversed(children.get(span_id, [])))
    counts = {k: len(v) for k, v in children.items()}
    return out, depth, counts


def subtree_sizes(ids: list[str], depth: dict[str, int]) -> dict[str, int]:
    """Each span's subtree size (itself included) in a depth-first order: the subtree of
    `ids[i]` is `ids[i : i + size]`."""
    sizes: dict[str, int] = {}
    open_: list[tuple[str, int, int]] = []  # (span id, depth, index)
    for index, span_id in enumerate(ids):
        level = depth[span_id]
        while open_ and open_[-1][1] >= level:
            done, _, at = open_.pop()
            sizes[done] = index - at
        open_.append((span_id, level, index))
    for done, _, at in open_:
        sizes[done] = len(ids) - at
    return sizes


@dataclass(frozen=True)
class _Layout:
    ids: list[str]
    depth: dict[str, int]
    children: dict[str, int]
    sizes: dict[str, int]
    start: int
    end: int

    def select(self, focus: str | None, levels: int | None) -> tuple[list[str], int]:
        """The ids shown: the subtree of `focus` (or the whole trace), down to `levels`
        below its top; and the depth of its top."""
        ids, base = self.ids, 0
        if focus is not None and focus in self.sizes:
            at = self.ids.index(focus)
            ids, base = self.ids[at : at + self.sizes[focus]], self.depth[focus]
        if levels is not None:
            ids = [i for i in ids if self.depth[i] - base <= levels]
        return ids, base


class TraceLayouts:
    """Layouts of big traces, kept while their span count stays the same: paging through a
    trace of 50,000 spans reads its ids once, not once a page. The service keeps one (the
    app factory makes it); at most `max_spans` ids are kept, the least recently used go."""

    def __init__(self, max_spans: int = 500_000) -> None:
        self.max_spans = max_spans
        self._kept: OrderedDict[tuple[int, str], _Layout] = OrderedDict()
        self._lock = threading.Lock()

    def layout(self, conn: Any, project_id: int, trace_id: str) -> _Layout | None:
        where = (Span.project_id == project_id, Span.trace_id == trace_id)
        count = int(
            conn.execute(select(func.count()).select_from(Span).where(*where)).scalar_one()
        )
        if not count:
            return None
        key = (project_id, trace_id)
        with self._lock:
            cached = self._kept.get(key)
            if cached is not None and len(cached.ids) == count:
                self._kept.move_to_end(key)
                return cached
        skeleton = conn.execute(
            select(Span.span_id, Span.parent_span_id, Span.start_time_unix_nano,
                   Span.end_time_unix_nano).where(*where)
        ).all()  # fmt: skip
        skeleton.sort(key=lambda r: (r[2], r[0]))
        ids, depth, children = order([(s, p, t0) for s, p, t0, _ in skeleton])
        start, end = min(r[2] for r in skeleton), max(r[3] for r in skeleton)
        layout = _Layout(ids, depth, children, subtree_sizes(ids, depth), start, end)
        if count > PAGE:
            with self._lock:
                self._kept[key] = layout
                while (
                    sum(len(v.ids) for v in self._kept.values()) > self.max_spans
                    and len(self._kept) > 1
                ):
                    self._kept.popitem(last=False)
        return layout


def page_of(
    engine: Engine,
    layouts: TraceLayouts,
    project_id: int,
    trace_id: str,
    page: int = 0,
    focus: str | None = None,
    levels: int | None = None,
) -> SpanPage:
    """Page `page` (from 0) of the trace's spans in tree order, or of the subtree under span
    `focus`, `levels` deep below its top (None: all); a page past the end is the last one."""
    trace_id = trace_id.lower()
    with read_connection(engine) as conn:
        layout = layouts.layout(conn, project_id, trace_id)
        if layout is None:
            return SpanPage(0, 0, 1, 0, 0, [], 0)
        shown, base = layout.select(focus, levels)
        pages = max(1, -(-len(shown) // PAGE))
        page = min(max(page, 0), pages - 1)
        wanted = shown[page * PAGE : (page + 1) * PAGE]
        full = {
            r.span_id: r
            for r in conn.execute(
                select(Span.span_id, Span.parent_span_id, Span.name, Span.start_time_unix_nano,
                       Span.end_time_unix_nano, Span.status_code, Span.status_message,
                       Span.service_name, Span.attributes)
                .where(Span.project_id == project_id, Span.trace_id == trace_id,
                       Span.span_id.in_(wanted))
            )
        }  # fmt: skip
    spans = []
    for span_id in wanted:
        r = full.get(span_id)
        if r is None:  # removed meanwhile (retention)
            continue
        spans.append(
            PagedSpan(
                span_id=span_id, parent_span_id=r.parent_span_id, name=r.name,
                depth=layout.depth[span_id] - base,
                start_time_unix_nano=int(r.start_time_unix_nano),
                end_time_unix_nano=int(r.end_time_unix_nano), status_code=int(r.status_code),
                status_message=r.status_message, service_name=r.service_name,
                attributes=r.attributes or {}, children=layout.children.get(span_id, 0),
                below=layout.sizes.get(span_id, 1) - 1,
            )
        )  # fmt: skip
    return SpanPage(len(shown), page, pages, layout.start, layout.end, spans, len(layout.ids))
