"""A trace's spans in tree order, a page at a time (SQLite and PostgreSQL), and the tree
order itself, whatever the spans' parents say."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, insert

from app.store import trace_pages
from app.store.engine import write_transaction
from app.store.tables import Span
from app.tenancy import projects

TRACE = "ab" * 16
T0 = 1_700_000_000_000_000_000


def test_the_order_is_depth_first_and_survives_loops() -> None:
    skeleton = [
        ("a", None, 0), ("b", "a", 1), ("c", "b", 2), ("d", "a", 3),
        ("x", "y", 4), ("y", "x", 5),  # a loop: placed once each, as roots
        ("o", "missing", 6), ("s", "s", 7),  # an absent parent, its own parent
    ]  # fmt: skip
    ids, depth, children = trace_pages.order(skeleton)
    assert ids[:4] == ["a", "b", "c", "d"]
    assert sorted(ids) == sorted(s for s, _, _ in skeleton)
    assert depth["c"] == 2 and depth["o"] == 0 and depth["s"] == 0
    assert children == {"a": 2, "b": 1, "x": 1, "y": 1}
    sizes = trace_pages.subtree_sizes(ids, depth)
    assert sizes["a"] == 4 and sizes["b"] == 2 and sizes["c"] == 1
    assert sum(sizes[i] for i in ids if depth[i] == 0) == len(ids)


def _span(pid: int, span_id: str, parent: str | None, t0: int) -> dict[str, Any]:
    return {
        "project_id": pid, "trace_id": TRACE, "span_id": span_id, "parent_span_id": parent,
        "name": f"span {span_id}", "kind": 1, "start_time_unix_nano": t0,
        "end_time_unix_nano": t0 + 1000, "status_code": 2 if span_id == "s0" else 0,
        "status_message": None, "service_name": "svc", "scope_name": "tests",
        "attributes": {"id": span_id}, "events": [], "links": [], "resource": {},
        "body_digest": os.urandom(32),
    }  # fmt: skip


def _store(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with write_transaction(engine) as conn:
        conn.execute(insert(Span), rows)


def test_pages_subtrees_and_levels_of_a_big_trace(engine: Engine) -> None:
    pid = projects.create_project(engine, "spans")
    # A root, three stages under it, 446 leaves spread over the stages: 450 spans.
    rows = [_span(pid, "root", None, T0)]
    rows += [_span(pid, f"s{i}", "root", T0 + (i + 1) * 10**6) for i in range(3)]
    rows += [_span(pid, f"l{i:03d}", f"s{i % 3}", T0 + 10**7 + i) for i in range(446)]
    _store(engine, rows)
    layouts = trace_pages.TraceLayouts()

    first = trace_pages.page_of(engine, layouts, pid, TRACE.upper())
    assert (first.total, first.pages, first.page, first.trace_total) == (450, 3, 0, 450)
    assert len(first.spans) == trace_pages.PAGE
    root, stage = first.spans[0], first.spans[1]
    assert (root.span_id, root.depth, root.children, root.below) == ("root", 0, 3, 449)
    assert (stage.span_id, stage.depth, stage.status_code) == ("s0", 1, 2)
    assert stage.below == 149 and stage.attributes == {"id": "s0"}
    assert first.spans[2].parent_span_id == "s0" and first.spans[2].depth == 2
    assert first.start_unix_nano == T0 and first.end_unix_nano == T0 + 10**7 + 445 + 1000
    # A page past the end is the last one.
    last = trace_pages.page_of(engine, layouts, pid, TRACE, page=99)
    assert last.page == 2 and len(last.spans) == 50

    # The subtree of one stage, its top at depth 0; then one level of the whole trace.
    subtree = trace_pages.page_of(engine, layouts, pid, TRACE, focus="s1")
    assert subtree.total == 150 and subtree.trace_total == 450
    assert subtree.spans[0].span_id == "s1" and subtree.spans[0].depth == 0
    assert {s.parent_span_id for s in subtree.spans[1:]} == {"s1"}
    top = trace_pages.page_of(engine, layouts, pid, TRACE, levels=1)
    assert [s.span_id for s in top.spans] == ["root", "s0", "s1", "s2"]

    # A span stored since the order was kept: the next read places it.
    _store(engine, [_span(pid, "late", "s2", T0 + 5 * 10**6)])
    again = trace_pages.page_of(engine, layouts, pid, TRACE, levels=2)
    assert again.trace_total == 451
    under = trace_pages.page_of(engine, layouts, pid, TRACE, focus="s2")
    assert "late" in {s.span_id for s in under.spans}


def test_an_unknown_trace_is_one_empty_page(engine: Engine) -> None:
    pid = projects.create_project(engine, "nothing")
    empty = trace_pages.page_of(engine, trace_pages.TraceLayouts(), pid, "cd" * 16)
    assert (empty.total, empty.pages, empty.spans, empty.trace_total) == (0, 1, [], 0)
