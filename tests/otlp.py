"""Building OTLP export requests for tests: real `opentelemetry-proto` messages."""

from __future__ import annotations

import gzip
import random
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from collectors import conventions as wire

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


def value(v: Any) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[value(x) for x in v]))
    return AnyValue(string_value=str(v))


def kvs(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=value(v)) for k, v in attrs.items()]


def span(
    trace_id: bytes,
    span_id: bytes,
    name: str,
    parent: bytes = b"",
    start: int = 1_700_000_000_000_000_000,
    duration: int = 5_000_000,
    attrs: dict[str, Any] | None = None,
    events: list[tuple[str, dict[str, Any]]] | None = None,
) -> Span:
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=start,
        end_time_unix_nano=start + duration,
        attributes=kvs(attrs or {}),
        events=[
            Span.Event(name=n, time_unix_nano=start + i, attributes=kvs(a))
            for i, (n, a) in enumerate(events or [])
        ],
    )


def request(spans: list[Span], service: str = "booking") -> ExportTraceServiceRequest:
    resource_spans = ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])
    resource_spans.resource.attributes.extend(kvs({wire.SERVICE_NAME: service}))
    return ExportTraceServiceRequest(resource_spans=[resource_spans])


class Ids:
    """Seeded trace and span ids, so failures reproduce."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)

    def trace(self) -> bytes:
        return self.rng.randbytes(16)

    def span(self) -> bytes:
        return self.rng.randbytes(8)


def hybrid_trace(ids: Ids, start: int = 1_700_000_000_000_000_000, **root_attrs: Any) -> list[Span]:
    """A request of the hybrid stack: root, LLM call, world-model rollout, planner decision."""
    trace, root = ids.trace(), ids.span()
    attrs = {
        wire.REQUEST_FINGERPRINT: "ab" * 32,
        wire.REQUEST_FINGERPRINT_KEY_ID: "k1",
        wire.model_name("llm"): "intent-parser",
        wire.model_version("llm"): "1",
        wire.model_name("world_model"): "booking-world-model",
        wire.model_version("world_model"): "3",
        wire.model_name("planner"): "mpc-planner",
        wire.model_version("planner"): "2",
        wire.REQUEST_OUTCOME: "booked",
        **root_attrs,
    }
    states = [
        (
            wire.STATE_EVENT,
            {
                wire.STATE_STEP: step,
                wire.STATE_LAYER: layer,
                wire.STATE_SUMMARY: [0.1 * step, 1.0, -2.0, 2.0, 3.5],
                wire.STATE_PROJECTION: [float(i) / 16 for i in range(16)],
            },
        )
        for step in range(8)
        for layer in ("encoder", "transition")
    ]
    candidates = (
        '[{"action": "room-a@15:00", "score": 0.9, "predicted": {"conflict": 0.05}},'
        ' {"action": "room-b@15:00", "score": 0.4, "predicted": {"conflict": 0.5}}]'
    )
    return [
        span(trace, root, wire.REQUEST_SPAN, start=start, duration=50_000_000, attrs=attrs),
        span(
            trace,
            ids.span(),
            "llm",
            parent=root,
            start=start + 1,
            attrs={wire.GEN_AI_SYSTEM: "offline", wire.GEN_AI_USAGE_INPUT_TOKENS: 12},
        ),
        span(trace, ids.span(), wire.ROLLOUT_SPAN, parent=root, start=start + 2, events=states),
        span(
            trace,
            ids.span(),
            wire.DECISION_SPAN,
            parent=root,
            start=start + 3,
            attrs={
                wire.PLANNER_CANDIDATES: candidates,
                wire.PLANNER_CHOSEN: "room-a@15:00",
                wire.PLANNER_CONFIDENCE: 0.9,
                wire.PLANNER_CONSTRAINTS: '["capacity>=6"]',
            },
            events=[
                (
                    wire.POLICY_EVENT,
                    {
                        wire.POLICY_ID: "risk-cap",
                        wire.POLICY_VERSION: "1",
                        wire.POLICY_HASH: "f" * 64,
                        wire.POLICY_PHASE: "post_decision",
                        wire.POLICY_OUTCOME: "allow",
                    },
                )
            ],
        ),
    ]


def to_json(message: ExportTraceServiceRequest) -> dict[str, Any]:
    """OTLP/JSON: the protobuf JSON mapping, with ids as hex as the OTLP spec requires."""
    doc = json_format.MessageToDict(message)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for sp in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in sp:
                        sp[key] = _b64_to_hex(sp[key])
    return doc


def _b64_to_hex(text: str) -> str:
    import base64

    return base64.b64decode(text).hex()


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data)


def parse_response(body: bytes) -> ExportTraceServiceResponse:
    response = ExportTraceServiceResponse()
    response.ParseFromString(body)
    return response
