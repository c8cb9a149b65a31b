"""The in-memory record of one request, and its OTLP form.

On the request path the SDK only appends plain Python values to a `RequestRecord`; turning
it into OTLP protobuf spans happens later, on the export thread (`encode`). That is why the
SDK costs less than opening an OpenTelemetry span per stage and per latent state.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from collectors import conventions as wire

if TYPE_CHECKING:
    import torch

    from collectors.experiments import Assignment

SCOPE = InstrumentationScope(name=wire.SDK_NAME, version="0.1.0")
_INTERNAL = Span.SPAN_KIND_INTERNAL
_SERVER = Span.SPAN_KIND_SERVER
_NO_ASSIGNMENTS: Mapping[str, Assignment] = MappingProxyType({})


class ChildSpan:
    __slots__ = ("attributes", "end_ns", "events", "kind", "name", "span_id", "start_ns", "status")

    def __init__(self, name: str, span_id: bytes, start_ns: int, kind: int = _INTERNAL) -> None:
        self.name = name
        self.span_id = span_id
        self.start_ns = start_ns
        self.end_ns = start_ns
        self.kind = kind
        self.attributes: dict[str, Any] = {}
        self.events: list[tuple[str, int, dict[str, Any]]] = []
        self.status: tuple[int, str] = (Status.STATUS_CODE_UNSET, "")


@dataclass(frozen=True, slots=True)
class SampledTensor:
    """A full latent-state tensor sampled for upload, beside the attributes of its
    `world_model.state` event: the export thread uploads the tensor and adds its hash there."""

    attributes: dict[str, Any]
    tensor: torch.Tensor


class RequestRecord:
    """Everything recorded about one request, until it is encoded for export."""

    __slots__ = (
        "assignments",
        "attributes",
        "captures",
        "children",
        "context",
        "end_ns",
        "events",
        "name",
        "shadows",
        "span_id",
        "start_ns",
        "status",
        "steps",
        "tensors",
        "trace_id",
    )

    def __init__(self, name: str, trace_id: bytes | None = None) -> None:
        self.trace_id = trace_id or random.getrandbits(128).to_bytes(16, "big")
        self.span_id = self.derived_id(0)
        self.name = name
        self.start_ns = time.time_ns()
        self.end_ns = self.start_ns
        self.attributes: dict[str, Any] = {}
        self.children: list[ChildSpan] = []
        # (layer, step, tensor) captured by forward hooks; summarised when the request ends.
        self.captures: list[tuple[str, int, Any]] = []
        self.steps: dict[str, int] = {}
        # Set by the summary of the captures when some states were sampled in full.
        self.tensors: tuple[SampledTensor, ...] = ()
        self.status: tuple[int, str] = (Status.STATUS_CODE_UNSET, "")
        self.events: list[tuple[str, int, dict[str, Any]]] = []
        # What the pre_request gates saw; the post_decision gates see it too.
        self.context: dict[str, Any] = {}
        # Shadow runs scheduled in this request (`collectors.shadow`): handed to the shadow
        # worker when the request's scope closes, never before.
        self.shadows: list[tuple[Any, Any]] | None = None
        # The arm of each running experiment that serves a stage of this request, by stage.
        self.assignments: Mapping[str, Assignment] = _NO_ASSIGNMENTS

    def derived_id(self, n: int) -> bytes:
        """Span ids derived from the trace id: a request re-run under the same request id
        yields the same ids, so the service stores it once."""
        return hashlib.blake2b(self.trace_id + n.to_bytes(4, "big"), digest_size=8).digest()

    def child(self, name: str, kind: int = _INTERNAL) -> ChildSpan:
        span = ChildSpan(name, self.derived_id(len(self.children) + 1), time.time_ns(), kind)
        self.children.append(span)
        return span

    def span_count(self) -> int:
        return 1 + len(self.children)


def trace_id_for(request_id: str, namespace: bytes) -> bytes:
    """The trace id of a request with a caller-given id: stable, so retries deduplicate."""
    return hashlib.blake2b(request_id.encode(), key=namespace[:64], digest_size=16).digest()


def _value(v: Any) -> AnyValue:
    if isinstance(v, str):
        return AnyValue(string_value=v)
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[_value(x) for x in v]))
    if isinstance(v, bytes):
        return AnyValue(bytes_value=v)
    return AnyValue(string_value=json.dumps(v, sort_keys=True, default=str))


def _attributes(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_value(v)) for k, v in attrs.items() if v is not None]


def _span(
    trace_id: bytes,
    span_id: bytes,
    parent: bytes,
    name: str,
    kind: int,
    start: int,
    end: int,
    attrs: dict[str, Any],
    events: list[tuple[str, int, dict[str, Any]]],
    status: tuple[int, str],
) -> Span:
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        kind=kind,  # type: ignore[arg-type]
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        attributes=_attributes(attrs),
        events=[
            Span.Event(name=n, time_unix_nano=t, attributes=_attributes(a)) for n, t, a in events
        ],
        status=Status(code=status[0], message=status[1]),  # type: ignore[arg-type]
    )


def record_spans(record: RequestRecord) -> list[Span]:
    """The OTLP spans of a finished record: the root, then its children."""
    spans = [
        _span(
            record.trace_id, record.span_id, b"", record.name, _SERVER, record.start_ns,
            record.end_ns, record.attributes, record.events, record.status,
        )
    ]  # fmt: skip
    for child in record.children:
        spans.append(
            _span(
                record.trace_id, child.span_id, record.span_id, child.name, child.kind,
                child.start_ns, child.end_ns, child.attributes, child.events, child.status,
            )
        )  # fmt: skip
    return spans


def encode(
    records: list[RequestRecord], other: ExportTraceServiceRequest | None, resource: dict[str, Any]
) -> bytes:
    """One `ExportTraceServiceRequest` (serialised) for records and other OTel spans."""
    request = ExportTraceServiceRequest()
    if records:
        spans = [span for record in records for span in record_spans(record)]
        request.resource_spans.append(
            ResourceSpans(
                resource=Resource(attributes=_attributes(resource)),
                scope_spans=[ScopeSpans(scope=SCOPE, spans=spans)],
            )
        )
    if other is not None:
        request.resource_spans.extend(other.resource_spans)
    return bytes(request.SerializeToString())
