"""Sending one payload to the service and saying what to do next, as a value."""

from __future__ import annotations

import datetime
import email.utils
import enum
import math
import time
from dataclasses import dataclass
from typing import Protocol

import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

# Answers that retrying cannot fix: keep the payload aside instead of retrying forever.
_FATAL = frozenset({400, 401, 403, 404, 413, 415})
_RETRY = frozenset({408, 429, 500, 502, 503, 504})


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    retry_after: float | None = None
    rejected_spans: int = 0
    message: str = ""


class Sender(Protocol):
    """Where export payloads go. The default sends HTTP; a process that hosts the service
    itself (its gateway) can hand payloads over in-process instead."""

    def send(self, url: str, payload: bytes, content_type: str | None = None) -> Result: ...

    def close(self) -> None: ...


class Transport:
    """The default sender: OTLP/HTTP with keep-alive."""

    def __init__(self, api_key: str | None, timeout: float) -> None:
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Content-Type"] = "application/x-protobuf"
        self.session.headers["User-Agent"] = "warden-collectors/0.1.0"
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def close(self) -> None:
        self.session.close()

    def send(self, url: str, payload: bytes, content_type: str | None = None) -> Result:
        headers = {"Content-Type": content_type} if content_type else None
        try:
            answer = self.session.request(
                "PUT" if content_type else "POST",
                url,
                data=payload,
                headers=headers,
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            return Result(Outcome.RETRY, message=f"{type(exc).__name__}: {exc}")
        if answer.status_code in (200, 201, 204):
            return Result(Outcome.DELIVERED, rejected_spans=_rejected(answer, content_type))
        message = f"HTTP {answer.status_code}: {answer.text[:300]}"
        if answer.status_code in _FATAL:
            return Result(Outcome.REJECTED, message=message)
        if answer.status_code in _RETRY or answer.status_code >= 500:
            return Result(
                Outcome.RETRY, _retry_after(answer.headers.get("Retry-After")), message=message
            )
        return Result(Outcome.REJECTED, message=message)


def _rejected(answer: requests.Response, content_type: str | None) -> int:
    if content_type or not answer.content:
        return 0
    response = ExportTraceServiceResponse()
    try:
        response.ParseFromString(answer.content)
    except Exception:  # a foreign server's body: it said 200, which is what counts
        return 0
    return int(response.partial_success.rejected_spans)


def _retry_after(value: str | None) -> float | None:
    """Seconds a `Retry-After` header asks for (RFC 9110: delay-seconds or an HTTP-date);
    None when absent or unreadable, so a malformed header means backoff, never an error.

    >>> _retry_after("3"), _retry_after("soon"), _retry_after("Thu, 01 Jan 1970 00:00:00 GMT")
    (3.0, None, 0.0)
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:  # RFC 9110 dates are GMT
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return max(0.0, parsed.timestamp() - time.time())
