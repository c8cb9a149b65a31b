"""Typed read models of the stored telemetry: requests, their spans, world-model states,
planner decisions and policy evaluations, as `queries` returns them and the API serves them.

Field names are the wire names of `GET /v1/requests` and `GET /v1/traces`: clients depend on
them, so a field here changes only with the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from collectors import conventions as wire


class ModelRef(BaseModel):
    name: str
    version: str


class RequestSummary(BaseModel):
    """One request (its root span) as the list shows it."""

    request_id: str = Field(description="The request's id: its OTLP trace id (hex)")
    trace_id: str
    root_span_id: str
    name: str
    service_name: str | None
    start_time: str = Field(description="`start_time_unix_nano` as RFC 3339 (UTC)")
    end_time: str = Field(description="`end_time_unix_nano` as RFC 3339 (UTC)")
    start_time_unix_nano: int
    end_time_unix_nano: int
    duration_ms: float
    status: str
    outcome: str | None
    fingerprint: str | None
    fingerprint_key_id: str | None
    subject: str | None
    models: dict[str, ModelRef] = Field(description="Model version per stage role")
    ingested_at: datetime


class RequestPage(BaseModel):
    items: list[RequestSummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end"
    )


class SpanOut(BaseModel):
    """A span as received (OTLP), without its resource."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    start_time_unix_nano: int
    end_time_unix_nano: int
    status_code: int
    status_message: str | None
    service_name: str | None
    scope_name: str | None
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    links: list[dict[str, Any]]


class SpanNode(BaseModel):
    """A span in the tree of its trace: its children nested under it."""

    span_id: str
    name: str
    children: list[SpanNode]


class StateOut(BaseModel):
    """One captured (step, layer) of the world model's rollout."""

    trace_id: str
    span_id: str
    seq: int
    step: int
    layer: str
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    l2_norm: float | None
    projection: list[float]
    tensor_sha256: str | None = Field(description="The sampled tensor: GET /v1/tensors/{digest}")
    time_unix_nano: int


class DecisionOut(BaseModel):
    """The planner's decision: every candidate it weighed, not only the winner."""

    trace_id: str
    span_id: str
    chosen: str | None
    confidence: float | None
    candidates: list[Any]
    constraints: list[Any]
    rationale: str | None
    time_unix_nano: int


class PolicyEvaluationOut(BaseModel):
    """One gate decision, with the exact policy (id, version, content hash) that made it."""

    trace_id: str | None
    span_id: str | None
    seq: int
    phase: str
    policy_id: str
    policy_version: str | None
    policy_hash: str | None
    outcome: str
    message: str | None
    time_unix_nano: int


class Usage(BaseModel):
    """Language-model calls and what they used (docs/conventions.md, "Tokens and cost")."""

    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = Field(
        default=None, description="By the project's price table; null when no call had a price"
    )


class MessageOut(BaseModel):
    role: str
    content: str
    finish_reason: str | None = None


class LlmCallOut(BaseModel):
    """A language-model call (a span with OpenTelemetry GenAI attributes)."""

    span_id: str
    operation: str | None
    provider: str | None
    request_model: str | None
    response_model: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None
    finish_reasons: list[str]
    input_messages: list[MessageOut] = Field(description="The prompt, in order")
    output_messages: list[MessageOut] = Field(description="The completion(s)")
    start_time_unix_nano: int
    end_time_unix_nano: int


class RetrievedDocumentOut(BaseModel):
    """A document a retrieval step returned (`gen_ai.retrieval.documents`), in rank order."""

    span_id: str
    seq: int = Field(description="Its rank in its retrieval step, from 0")
    data_source: str | None = Field(description="The retriever or index searched")
    document_id: str
    document_version: str | None
    document_digest: str | None
    score: float | None
    time_unix_nano: int


class Trace(BaseModel):
    trace_id: str
    spans: list[SpanOut]
    span_tree: list[SpanNode] = Field(description="Spans nested as {span_id, name, children}")


class RequestRecord(RequestSummary):
    """A request with what its spans recorded, without the spans themselves (a trace can
    hold tens of thousands)."""

    features: dict[str, Any] | None = Field(
        default=None, description=f"The structured input's features (`{wire.INPUT_FEATURES}`)"
    )
    states: list[StateOut]
    decisions: list[DecisionOut]
    policy_evaluations: list[PolicyEvaluationOut]
    usage: Usage = Field(description="Its language-model calls' tokens and cost")
    llm_calls: list[LlmCallOut]
    retrievals: list[RetrievedDocumentOut] = Field(description="The documents it retrieved")


class RequestDetail(RequestSummary):
    """A request with its spans (flat and as a tree) and what they recorded."""

    features: dict[str, Any] | None = Field(
        default=None, description=f"The structured input's features (`{wire.INPUT_FEATURES}`)"
    )
    spans: list[SpanOut]
    span_tree: list[SpanNode]
    states: list[StateOut]
    decisions: list[DecisionOut]
    policy_evaluations: list[PolicyEvaluationOut]
    usage: Usage = Field(description="Its language-model calls' tokens and cost")
    llm_calls: list[LlmCallOut]
    retrievals: list[RetrievedDocumentOut] = Field(description="The documents it retrieved")
