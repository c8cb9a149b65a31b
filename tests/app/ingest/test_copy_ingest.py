"""The bulk write path of a batch (COPY into staging, then insert-on-conflict on PostgreSQL;
executemany on SQLite): the same answers and the same rows on both databases."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from app.audit.erasure import Vault
from app.ingest.normalise import span_rows
from app.ingest.store import SPAN_COLUMNS, IngestResult, _span_params, store_batch
from app.store.bulk import copy_insert_ignore, staging_name
from app.store.dialect import is_postgresql
from app.store.tables import PlannerDecision, Request, Span, WorldModelState
from app.tenancy import projects
from collectors import conventions as wire
from tests import otlp
from tests.conftest import TEST_SECRET

VAULT = Vault(TEST_SECRET.encode())


def ingest(engine: Engine, project_id: int, spans: list[Any]) -> IngestResult:
    return store_batch(engine, VAULT, project_id, span_rows(otlp.request(spans)))


def count(engine: Engine, model: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())


def stored_states(engine: Engine) -> list[tuple[Any, ...]]:
    table = WorldModelState.__table__
    columns = [c for c in table.c if c.name != "id"]
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(select(*columns).order_by(table.c.span_id, table.c.seq))
        ]


def test_resending_a_batch_stores_nothing_twice(engine: Engine) -> None:
    pid = projects.create_project(engine, "shop")
    spans = otlp.hybrid_trace(otlp.Ids(11)) + otlp.hybrid_trace(otlp.Ids(12))
    first = ingest(engine, pid, spans)
    assert (first.accepted, first.duplicates, first.conflicts) == (8, 0, 0)
    states = stored_states(engine)
    for _ in range(2):
        again = ingest(engine, pid, spans)
        assert (again.accepted, again.duplicates, again.conflicts) == (0, 8, 0)
    assert count(engine, Span) == 8
    assert count(engine, Request) == 2
    assert count(engine, PlannerDecision) == 2
    assert stored_states(engine) == states


def test_a_conflicting_body_is_counted_and_not_stored(engine: Engine) -> None:
    pid = projects.create_project(engine, "shop")
    ids = otlp.Ids(13)
    trace, root = ids.trace(), ids.span()
    kept = otlp.span(trace, root, wire.REQUEST_SPAN, attrs={wire.REQUEST_OUTCOME: "booked"})
    forged = otlp.span(trace, root, wire.REQUEST_SPAN, attrs={wire.REQUEST_OUTCOME: "denied"})
    assert ingest(engine, pid, [kept]).accepted == 1
    result = ingest(engine, pid, [forged])
    assert (result.accepted, result.duplicates, result.conflicts) == (0, 0, 1)
    with engine.connect() as conn:
        outcomes = conn.execute(select(Request.outcome)).scalars().all()
        attributes = conn.execute(select(Span.attributes)).scalars().all()
    assert outcomes == ["booked"]
    assert attributes == [{wire.REQUEST_OUTCOME: "booked"}]


def test_a_mixed_batch_stores_the_new_skips_the_resent_and_refuses_the_conflict(
    engine: Engine,
) -> None:
    pid = projects.create_project(engine, "shop")
    old = otlp.hybrid_trace(otlp.Ids(14))
    assert ingest(engine, pid, old).accepted == 4
    new = otlp.hybrid_trace(otlp.Ids(15))
    forged = otlp.Span()
    forged.CopyFrom(old[1])
    forged.name = "llm-forged"
    result = ingest(engine, pid, [*old[2:], *new, forged])
    # 4 new spans, 2 harmless resends, 1 conflict (the stored llm span is kept).
    assert (result.accepted, result.duplicates, result.conflicts) == (4, 2, 1)
    assert count(engine, Span) == 8
    assert count(engine, Request) == 2
    assert count(engine, WorldModelState) == 32
    with engine.connect() as conn:
        names = set(conn.execute(select(Span.name)).scalars())
    assert "llm-forged" not in names


def test_states_keep_every_value_through_the_bulk_path(engine: Engine) -> None:
    pid = projects.create_project(engine, "shop")
    trace = otlp.hybrid_trace(otlp.Ids(16))
    ingest(engine, pid, trace)
    states = stored_states(engine)
    assert len(states) == 16
    columns = [c.name for c in WorldModelState.__table__.c if c.name != "id"]
    by_name = [dict(zip(columns, row, strict=True)) for row in states]
    first = next(s for s in by_name if s["step"] == 3 and s["layer"] == "transition")
    assert first["trace_id"] == trace[0].trace_id.hex()
    assert first["span_id"] == trace[2].span_id.hex()
    assert (first["mean"], first["std"], first["min"], first["max"], first["l2_norm"]) == (
        0.30000000000000004, 1.0, -2.0, 2.0, 3.5,
    )  # fmt: skip
    assert first["projection"] == [float(i) / 16 for i in range(16)]
    assert first["tensor_sha256"] is None
    assert sorted(s["seq"] for s in by_name) == list(range(16))


def test_copy_insert_ignore_counts_only_new_rows_and_leaves_the_stage_empty(
    engine: Engine,
) -> None:
    if not is_postgresql(engine):
        pytest.skip("COPY is PostgreSQL's; on SQLite the tests above cover executemany")
    pid = projects.create_project(engine, "shop")
    columns = ("project_id", "trace_id", "span_id", "parent_span_id", "name", "kind",
               "start_time_unix_nano", "end_time_unix_nano", "status_code", "status_message",
               "service_name", "scope_name", "attributes", "events", "links", "resource",
               "body_digest")  # fmt: skip
    key = ("project_id", "trace_id", "span_id")

    def row(span_id: str, name: str) -> tuple[Any, ...]:
        return (pid, "a" * 32, span_id, None, name, 1, 1, 2, 0, None, "svc", None,
                '{"k": "tab\\there \\\\ back"}', "[]", "[]", "{}", b"\x00\\\n\xff")  # fmt: skip

    with engine.connect() as conn:
        with conn.begin():
            assert copy_insert_ignore(conn, "spans", columns, key, [row("b" * 16, "x")]) == 1
        with conn.begin():
            rows = [row("c" * 16, "y"), row("b" * 16, "other")]
            assert copy_insert_ignore(conn, "spans", columns, key, rows) == 1
        # The session's staging table outlives the transaction, empty.
        staged = conn.exec_driver_sql(f"SELECT count(*) FROM {staging_name('spans')}")
        assert staged.scalar_one() == 0
        conn.rollback()
        stored = conn.execute(
            select(Span.span_id, Span.name, Span.attributes, Span.body_digest).order_by(
                Span.span_id
            )
        ).all()
    assert [(s, n) for s, n, _, _ in stored] == [("b" * 16, "x"), ("c" * 16, "y")]
    assert stored[0][2] == {"k": "tab\there \\ back"}
    assert bytes(stored[0][3]) == b"\x00\\\n\xff"


def test_a_span_stored_meanwhile_by_another_transaction_makes_the_batch_take_the_staging_path(
    engine: Engine,
) -> None:
    # A batch is COPYed straight in, as new. Another transaction storing one of its spans
    # first (here: holding it uncommitted, and committing while the COPY waits on it) aborts
    # the COPY; the batch is written again through the staging path, and counts the span a
    # duplicate.
    if not is_postgresql(engine):
        pytest.skip("the direct COPY is PostgreSQL's")
    pid = projects.create_project(engine, "shop")
    spans = otlp.hybrid_trace(otlp.Ids(21)) + otlp.hybrid_trace(otlp.Ids(22))
    parsed = span_rows(otlp.request(spans))
    first = min(parsed.spans, key=lambda r: (r["trace_id"], r["span_id"]))
    other = engine.connect()
    other.begin()
    other.exec_driver_sql(
        f"INSERT INTO spans ({', '.join(SPAN_COLUMNS)}) "
        f"VALUES ({', '.join(['%s'] * len(SPAN_COLUMNS))})",
        _span_params(pid, first),
    )
    results: list[IngestResult] = []
    writer = threading.Thread(
        target=lambda: results.append(ingest(engine, pid, spans)), daemon=True
    )
    writer.start()
    with engine.connect() as watch:
        # Until the writer waits on the uncommitted span's lock.
        for _ in range(600):
            waiting = watch.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            ).scalar_one()
            if waiting:
                break
            watch.rollback()
            time.sleep(0.05)
        assert waiting, "the batch's COPY never waited on the other transaction's span"
    other.commit()
    other.close()
    writer.join(30)
    assert results, "the batch was not stored"
    result = results[0]
    assert (result.accepted, result.duplicates, result.conflicts) == (7, 1, 0)
    assert count(engine, Span) == 8
    assert count(engine, Request) == 2
    assert count(engine, PlannerDecision) == 2
