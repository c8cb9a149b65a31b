"""One `request` ledger event per stored request, appended by ingest in its own transaction.

Only requests whose row the batch inserted get an event, so a batch sent twice appends
nothing the second time, and a batch that fails appends nothing at all (the transaction
rolls back with it). The payload is built from the rows ingest has in hand; only spans of
the request stored by earlier batches are read back. docs/audit.md ("The request event")
lists its members.

`spans_digest` = SHA-256 of the concatenated 32-byte body digests (SHA-256 of each span's
protobuf encoding, `spans.body_digest`) of the request's spans stored when its root span
was, ordered by span id (lower-case hex, ascending). Spans of the trace that arrive after the
root are not covered.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select

from app.audit import erasure, ledger
from app.audit.erasure import Vault
from app.audit.ledger import AppendedEvent
from app.ingest.normalise import Normalised
from app.store.dialect import placeholder
from app.store.tables import PlannerDecision, PolicyEvaluation, Span


def record_requests(
    conn: Connection,
    vault: Vault,
    project_id: int,
    new_traces: list[str],
    typed: Normalised,
    batch_spans: Mapping[str, Mapping[str, bytes]],
    inputs: Mapping[str, str],
) -> list[AppendedEvent]:
    """Append a `request` event for each newly stored request (and seal retained inputs).

    `batch_spans` maps a trace to the spans (span id -> body digest) this batch stored or
    re-sent unchanged;
    `inputs` holds the retained inputs taken out of the root spans (`erasure.take_inputs`),
    which `vault` seals.
    """
    if not new_traces:
        return []
    traces = sorted(new_traces)
    wanted = set(traces)
    requests = {r["trace_id"]: r for r in typed.requests if r["trace_id"] in wanted}

    # The spans in hand are stored (inserted now, or identical to the stored ones); a trace
    # with more spans stored than in hand had some in earlier batches: those traces (the rare
    # case) are read back, the others need nothing more than a count.
    mark = placeholder(conn)
    counts: dict[str, int] = dict(
        conn.exec_driver_sql(
            f"SELECT trace_id, count(*) FROM spans WHERE project_id = {mark} "
            f"AND trace_id IN ({', '.join([mark] * len(traces))}) GROUP BY trace_id",
            (project_id, *traces),
        ).all()
    )
    stored: dict[str, list[tuple[str, bytes]]] = {
        t: list(batch_spans.get(t, {}).items()) for t in traces
    }
    earlier = [t for t in traces if counts.get(t, 0) > len(stored[t])]
    if earlier:
        for t in earlier:
            stored[t] = []
        for trace_id, span_id, digest in conn.execute(
            select(Span.trace_id, Span.span_id, Span.body_digest).where(
                Span.project_id == project_id, Span.trace_id.in_(earlier)
            )
        ):
            stored[trace_id].append((span_id, bytes(digest)))
    decisions, policies = _in_hand(typed, wanted.difference(earlier))
    if earlier:
        _read_back(conn, project_id, earlier, decisions, policies)

    subjects = erasure.subject_rows(
        conn, project_id, [r["subject"] for r in requests.values() if r["subject"] is not None]
    )
    retained = erasure.store_inputs(
        conn,
        vault,
        project_id,
        {t: (inputs[t], requests[t]["subject"]) for t in traces if t in inputs},
        subjects,
    )

    events = []
    for trace_id in traces:
        request = requests[trace_id]
        spans = sorted(stored[trace_id])
        payload: dict[str, Any] = {
            "trace_id": trace_id,
            "root_span_id": request["root_span_id"],
            "start_time_unix_nano": str(request["start_time_unix_nano"]),
            "fingerprint": request["fingerprint"],
            "fingerprint_key_id": request["fingerprint_key_id"],
            "models": request["models"],
            "outcome": request["outcome"],
            "status": request["status"],
            "decisions": decisions.get(trace_id, []),
            "policies": policies.get(trace_id, []),
            "spans": len(spans),
            "spans_digest": hashlib.sha256(b"".join(d for _, d in spans)).hexdigest(),
            "input_retained": trace_id in retained,
        }
        subject = request["subject"]
        if subject is not None:
            payload["subject"] = subjects[subject].pseudonym
        events.append((ledger.REQUEST, payload))
    return ledger.append_many(conn, project_id, None, events, trusted=True)


def _decision(chosen: Any, confidence: Any, candidates: Any) -> dict[str, Any]:
    if isinstance(confidence, float) and not (
        math.isfinite(confidence) and abs(confidence) < 2**53
    ):
        confidence = None  # JSON would not give it back exactly
    return {
        "chosen": chosen,
        "confidence": confidence,
        "candidates": len(candidates) if isinstance(candidates, list) else 0,
    }


def _policy(policy_id: Any, version: Any, outcome: Any) -> dict[str, Any]:
    return {"id": policy_id, "version": version, "outcome": outcome}


def _in_hand(
    typed: Normalised, traces: set[str]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    decisions: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for d in typed.decisions:
        if d["trace_id"] in traces:
            decisions.setdefault(d["trace_id"], []).append(
                (d["span_id"], _decision(d["chosen"], d["confidence"], d["candidates"]))
            )
    policies: dict[str, list[tuple[str, int, dict[str, Any]]]] = {}
    for p in typed.policy_evaluations:
        if p["trace_id"] in traces:
            policies.setdefault(p["trace_id"], []).append(
                (p["span_id"], p["seq"],
                 _policy(p["policy_id"], p["policy_version"], p["outcome"]))
            )  # fmt: skip
    return (
        {t: [d for _, d in sorted(ds, key=lambda x: x[0])] for t, ds in decisions.items()},
        {t: [p for _, _, p in sorted(ps, key=lambda x: x[:2])] for t, ps in policies.items()},
    )


def _read_back(
    conn: Connection,
    project_id: int,
    traces: list[str],
    decisions: dict[str, list[dict[str, Any]]],
    policies: dict[str, list[dict[str, Any]]],
) -> None:
    for row in conn.execute(
        select(PlannerDecision.trace_id, PlannerDecision.chosen, PlannerDecision.confidence,
               PlannerDecision.candidates)
        .where(PlannerDecision.project_id == project_id, PlannerDecision.trace_id.in_(traces))
        .order_by(PlannerDecision.trace_id, PlannerDecision.span_id)
    ):  # fmt: skip
        decisions.setdefault(row.trace_id, []).append(
            _decision(row.chosen, row.confidence, row.candidates)
        )
    for row in conn.execute(
        select(PolicyEvaluation.trace_id, PolicyEvaluation.policy_id,
               PolicyEvaluation.policy_version, PolicyEvaluation.outcome)
        .where(PolicyEvaluation.project_id == project_id, PolicyEvaluation.trace_id.in_(traces))
        .order_by(PolicyEvaluation.trace_id, PolicyEvaluation.span_id, PolicyEvaluation.seq)
    ):  # fmt: skip
        policies.setdefault(row.trace_id, []).append(
            _policy(row.policy_id, row.policy_version, row.outcome)
        )
