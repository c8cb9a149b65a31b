"""Prometheus metrics of one service process, in a registry of its own (no global state)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.ingested_spans = Counter(
            "warden_ingested_spans", "Spans stored by OTLP ingest.", registry=self.registry
        )
        self.duplicate_spans = Counter(
            "warden_duplicate_spans",
            "Spans received again with the same body, stored once.",
            registry=self.registry,
        )
        self.rejected_spans = Counter(
            "warden_rejected_spans",
            "Spans not stored (invalid ids, or a conflict with a stored span of the same id), or "
            "stored but refused as scores (reason `score`).",
            ["reason"],
            registry=self.registry,
        )
        self.ingested_requests = Counter(
            "warden_ingested_requests", "Root spans stored as requests.", registry=self.registry
        )
        self.refused_batches = Counter(
            "warden_ingest_refused_batches",
            "OTLP export batches refused unread with 503 and Retry-After (reason `overload`: "
            "the process had `ingest_max_pending` batches in flight or queued).",
            ["reason"],
            registry=self.registry,
        )
        self.pending_batches = Gauge(
            "warden_ingest_pending_batches",
            "OTLP export batches this process has admitted and not yet answered.",
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "warden_http_request_duration_seconds",
            "Time to answer an HTTP request, by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.daemon_leader = Gauge(
            "warden_daemon_leader",
            "1 while this process leads the background job (app/daemons.py), else 0.",
            ["daemon"],
            registry=self.registry,
        )
        self.daemon_ticks = Counter(
            "warden_daemon_ticks",
            "Rounds of the background job run in this process, as its leader.",
            ["daemon"],
            registry=self.registry,
        )
        self.daemon_failures = Counter(
            "warden_daemon_failures",
            "Rounds of the background job that raised (logged; the job goes on).",
            ["daemon"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


class MetricsMiddleware:
    """Pure ASGI, so timing adds no extra task per request; labelled by route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.http_duration.labels(scope["method"], path, str(status)).observe(
                time.perf_counter() - start
            )
