"""Response models of the JSON API; they are what /openapi.json documents."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from collectors import conventions as wire


class ModelRef(BaseModel):
    name: str
    version: str


class RequestSummary(BaseModel):
    request_id: str = Field(description="The request's id: its OTLP trace id (hex)")
    trace_id: str
    root_span_id: str
    name: str
    service_name: str | None
    start_time: str
    end_time: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    duration_ms: float
    status: str
    outcome: str | None
    fingerprint: str | None
    fingerprint_key_id: str | None
    subject: str | None
    models: dict[str, ModelRef] = Field(description="Model version per stage role")
    ingested_at: Any


class RequestPage(BaseModel):
    items: list[RequestSummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end"
    )


class SpanOut(BaseModel):
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


class StateOut(BaseModel):
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
    tensor_sha256: str | None
    time_unix_nano: int


class DecisionOut(BaseModel):
    trace_id: str
    span_id: str
    chosen: str | None
    confidence: float | None
    candidates: list[Any]
    constraints: list[Any]
    rationale: str | None
    time_unix_nano: int


class PolicyEvaluationOut(BaseModel):
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


class Trace(BaseModel):
    trace_id: str
    spans: list[SpanOut]
    span_tree: list[dict[str, Any]] = Field(description="Spans nested as {span_id, name, children}")


class RequestDetail(RequestSummary):
    features: dict[str, Any] | None = Field(
        default=None, description=f"The structured input's features (`{wire.INPUT_FEATURES}`)"
    )
    spans: list[SpanOut]
    span_tree: list[dict[str, Any]]
    states: list[StateOut]
    decisions: list[DecisionOut]
    policy_evaluations: list[PolicyEvaluationOut]
