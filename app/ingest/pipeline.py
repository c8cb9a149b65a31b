"""One OTLP export request from body bytes to committed rows."""

from __future__ import annotations

from sqlalchemy import Engine

from app.audit.erasure import Vault
from app.ingest import otlp
from app.ingest.normalise import span_rows
from app.ingest.store import IngestResult, store_batch
from app.metrics import Metrics


def ingest_traces(
    engine: Engine,
    vault: Vault,
    metrics: Metrics,
    project_id: int,
    body: bytes,
    kind: str,
    content_encoding: str | None,
    limit: int,
) -> IngestResult:
    """Decode, normalise and store (retained inputs sealed with `vault`); raises a 4xx error
    (having written nothing) on bad input."""
    data = otlp.decompress(body, content_encoding, limit)
    batch = span_rows(otlp.parse_request(data, kind))
    result = store_batch(engine, vault, project_id, batch)
    metrics.ingested_spans.inc(result.accepted)
    metrics.duplicate_spans.inc(result.duplicates)
    metrics.ingested_requests.inc(result.requests)
    if result.invalid:
        metrics.rejected_spans.labels("invalid").inc(result.invalid)
    if result.conflicts:
        metrics.rejected_spans.labels("conflict").inc(result.conflicts)
    if result.refused_scores:
        metrics.rejected_spans.labels("score").inc(result.refused_scores)
    return result


def partial_success_message(result: IngestResult) -> str:
    parts = []
    if result.invalid:
        parts.append(f"{result.invalid} spans had invalid ids (first: {result.first_rejection})")
    if result.conflicts:
        parts.append(
            f"{result.conflicts} spans reused the (trace_id, span_id) of a stored span with a "
            "different body; the stored span was kept"
        )
    if result.refused_scores:
        parts.append(
            f"{result.refused_scores} score spans were stored as spans but not recorded as "
            f"scores (first: {result.first_refused_score})"
        )
    return "; ".join(parts)
