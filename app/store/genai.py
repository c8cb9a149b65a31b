"""What the language-model calls and retrieval steps of requests recorded (`llm_calls`,
`retrievals`, written by app/ingest/genai.py): per request, and token and cost totals per
model version over the requests it served."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from app.store.tables import LlmCall, RequestModel, Retrieval

_CALL_COLUMNS = (
    LlmCall.span_id, LlmCall.operation, LlmCall.provider, LlmCall.request_model,
    LlmCall.response_model, LlmCall.input_tokens, LlmCall.output_tokens, LlmCall.cost,
    LlmCall.finish_reasons, LlmCall.input_messages, LlmCall.output_messages,
    LlmCall.start_time_unix_nano, LlmCall.end_time_unix_nano,
)  # fmt: skip
_DOCUMENT_COLUMNS = (
    Retrieval.span_id, Retrieval.seq, Retrieval.data_source, Retrieval.document_id,
    Retrieval.document_version, Retrieval.document_digest, Retrieval.score,
    Retrieval.time_unix_nano,
)  # fmt: skip


def request_genai(conn: Connection, project_id: int, trace_id: str) -> dict[str, Any]:
    """A request's `llm_calls` (in time order), their `usage` totals, and its `retrievals`
    (retrieval steps in time order, each one's documents in rank order)."""
    calls = [
        dict(r._mapping)
        for r in conn.execute(
            select(*_CALL_COLUMNS)
            .where(LlmCall.project_id == project_id, LlmCall.trace_id == trace_id)
            .order_by(LlmCall.start_time_unix_nano, LlmCall.span_id)
        )
    ]
    documents = [
        dict(r._mapping)
        for r in conn.execute(
            select(*_DOCUMENT_COLUMNS)
            .where(Retrieval.project_id == project_id, Retrieval.trace_id == trace_id)
            .order_by(Retrieval.time_unix_nano, Retrieval.span_id, Retrieval.seq)
        )
    ]
    costs = [c["cost"] for c in calls if c["cost"] is not None]
    usage = {
        "llm_calls": len(calls),
        "input_tokens": sum(c["input_tokens"] or 0 for c in calls),
        "output_tokens": sum(c["output_tokens"] or 0 for c in calls),
        "cost": sum(costs) if costs else None,
    }
    return {"llm_calls": calls, "usage": usage, "retrievals": documents}


def usage_per_version(
    conn: Connection, project_id: int, name: str | None = None, version: str | None = None
) -> dict[tuple[str, str], dict[str, Any]]:
    """Language-model calls, tokens and cost of the requests each model version served
    (only versions whose requests made a call)."""
    query = (
        select(
            RequestModel.model_name, RequestModel.model_version, func.count(LlmCall.id),
            func.sum(LlmCall.input_tokens), func.sum(LlmCall.output_tokens),
            func.sum(LlmCall.cost), func.count(LlmCall.cost),
        )
        .join(LlmCall, (LlmCall.project_id == RequestModel.project_id)
              & (LlmCall.trace_id == RequestModel.trace_id))
        .where(RequestModel.project_id == project_id)
        .group_by(RequestModel.model_name, RequestModel.model_version)
    )  # fmt: skip
    if name is not None:
        query = query.where(RequestModel.model_name == name, RequestModel.model_version == version)
    return {
        (n, v): {
            "llm_calls": int(calls),
            "input_tokens": int(tokens_in or 0),
            "output_tokens": int(tokens_out or 0),
            "cost": float(cost or 0.0) if priced else None,
        }
        for n, v, calls, tokens_in, tokens_out, cost, priced in conn.execute(query)
    }
