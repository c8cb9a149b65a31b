"""Shared steps of the score tests: requests ingested over OTLP/HTTP, score spans as the SDK
sends them, the ledger's events of a kind."""

from __future__ import annotations

from typing import Any

import httpx
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from sqlalchemy import Engine, select

from app.audit import ledger
from app.store.tables import AuditEvent, Project
from collectors import conventions as wire
from tests import otlp

SECOND = 1_000_000_000
T0 = 1_700_000_000 * SECOND


def send(client: httpx.Client, spans: list[Span]) -> Any:
    """POST spans as OTLP protobuf; the decoded `ExportTraceServiceResponse`."""
    answer = client.post(
        "/v1/traces", content=otlp.request(spans).SerializeToString(), headers=otlp.PROTOBUF
    )
    assert answer.status_code == 200, answer.text
    return otlp.parse_response(answer.content)


def requests(client: httpx.Client, ids: otlp.Ids, count: int, **attrs: Any) -> list[str]:
    """`count` requests of the hybrid stack, stored; their ids."""
    spans: list[Span] = []
    traces = []
    for i in range(count):
        trace = otlp.hybrid_trace(ids, start=T0 + i * SECOND, **attrs)
        traces.append(trace[0].trace_id.hex())
        spans += trace
    send(client, spans)
    return traces


def score_span(ids: otlp.Ids, request_id: str, name: str, value: Any, **attrs: Any) -> Span:
    """A `warden.score` root span of a trace of its own."""
    return otlp.span(
        ids.trace(),
        ids.span(),
        wire.SCORE_SPAN,
        start=T0 + 100 * SECOND,
        attrs={
            wire.SCORE_REQUEST: request_id,
            wire.SCORE_NAME: name,
            wire.SCORE_VALUE: value,
            wire.SCORE_SOURCE: "automatic",
            **attrs,
        },
    )


def score_events(engine: Engine, project: str) -> list[dict[str, Any]]:
    """The payloads of the project's `score.recorded` events, in seq order."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(AuditEvent.payload)
            .join(Project, Project.id == AuditEvent.project_id)
            .where(Project.name == project, AuditEvent.kind == ledger.SCORE_RECORDED)
            .order_by(AuditEvent.seq)
        ).scalars()
        return [dict(p) for p in rows]


def config_events(engine: Engine, project: str) -> list[tuple[str, dict[str, Any]]]:
    """The project's score-config events (kind, payload), in seq order."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(AuditEvent.kind, AuditEvent.payload)
            .join(Project, Project.id == AuditEvent.project_id)
            .where(
                Project.name == project,
                AuditEvent.kind.in_((ledger.SCORE_CONFIG_SET, ledger.SCORE_CONFIG_DELETED)),
            )
            .order_by(AuditEvent.seq)
        )
        return [(kind, dict(payload)) for kind, payload in rows]
