"""Decoding of OTLP/HTTP trace export requests (protobuf and JSON, optionally gzipped).

Parsing is done by `opentelemetry-proto`'s generated messages; the only hand-written step is
the one the OTLP specification asks of JSON receivers: trace and span ids are hex strings in
OTLP/JSON, where the generic protobuf JSON mapping would expect base64.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from app.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type header; 415 when it is not an OTLP one."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind not in (PROTOBUF, JSON):
        raise UnsupportedMediaType(
            f"unsupported content type {content_type or '(none)'!r}: "
            f"send OTLP as {PROTOBUF!r} or {JSON!r}"
        )
    return kind


def decompress(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Undo `Content-Encoding`; the inflated size is held to `limit` too (no zip bombs)."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding != "gzip":
        raise UnsupportedMediaType(
            f"unsupported content encoding {content_encoding!r}: send 'gzip' or none"
        )
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid gzip: {exc}") from exc
    if len(data) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body is over the limit of {limit} bytes")
    if not inflater.eof:
        raise BadRequest("body is not valid gzip: the stream is truncated")
    return data


def parse_request(body: bytes, kind: str) -> ExportTraceServiceRequest:
    """Parse an `ExportTraceServiceRequest`; 400 with the parser's reason when malformed."""
    message = ExportTraceServiceRequest()
    if kind == PROTOBUF:
        try:
            message.ParseFromString(body)
        except DecodeError as exc:
            raise BadRequest(f"malformed OTLP protobuf: {exc}") from exc
        return message
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise BadRequest("malformed OTLP JSON: the body must be an object with 'resourceSpans'")
    try:
        _hex_ids_to_base64(document)
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
        raise BadRequest(f"malformed OTLP JSON: {exc}") from exc
    return message


_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    for resource_spans in _list(document, "resourceSpans", "resource_spans"):
        for scope_spans in _list(resource_spans, "scopeSpans", "scope_spans"):
            for span in _list(scope_spans, "spans"):
                _convert_ids(span)
                for link in _list(span, "links"):
                    _convert_ids(link)


def _list(obj: Any, *keys: str) -> list[Any]:
    if not isinstance(obj, dict):
        raise ValueError(f"expected an object, got {type(obj).__name__}")
    for key in keys:
        value = obj.get(key)
        if value is not None:
            if not isinstance(value, list):
                raise ValueError(f"{key!r} must be a list")
            return value
    return []


def _convert_ids(obj: dict[str, Any]) -> None:
    for key in _ID_FIELDS:
        value = obj.get(key)
        if isinstance(value, str) and value:
            try:
                obj[key] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError as exc:
                raise ValueError(f"{key} {value!r} is not a hex string") from exc


def encode_response(kind: str, rejected: int = 0, error_message: str = "") -> bytes:
    """The `ExportTraceServiceResponse`, with `partial_success` set only when needed."""
    response = ExportTraceServiceResponse()
    if rejected or error_message:
        response.partial_success.CopyFrom(
            ExportTracePartialSuccess(rejected_spans=rejected, error_message=error_message)
        )
    if kind == PROTOBUF:
        return bytes(response.SerializeToString())
    return str(json_format.MessageToJson(response, indent=None)).encode()


def encode_status(kind: str, code: int, message: str) -> bytes:
    """The `google.rpc.Status` body that OTLP/HTTP asks for on 4xx and 5xx answers."""
    status = status_pb2.Status(code=code, message=message)
    if kind == PROTOBUF:
        return bytes(status.SerializeToString())
    return str(json_format.MessageToJson(status, indent=None)).encode()


__all__ = [
    "JSON",
    "PROTOBUF",
    "decompress",
    "encode_response",
    "encode_status",
    "media_type",
    "parse_request",
]
