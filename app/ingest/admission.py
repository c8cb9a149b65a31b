"""Admission control for OTLP ingest: how many export batches one process takes at a time.

A process admits at most `ingest_max_pending` batches at once: being read, waiting for a
thread or a database connection, or being stored. A batch past that bound is refused at
once, before its body is read, with 503 and `Retry-After` (a google.rpc.Status for OTLP
clients, which retry it), so overload costs the service a short answer instead of growing
its memory and every client's latency without bound. A refused batch writes nothing.

Admission runs on the event loop only (the route enters it before handing work to a
thread), so a plain counter needs no lock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.errors import Overloaded
from app.metrics import Metrics


class Admission:
    """The bound of one process; `slot()` holds one place for the life of a batch."""

    def __init__(self, limit: int, retry_after: int, metrics: Metrics) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self.metrics = metrics
        self.pending = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.pending >= self.limit:
            self.metrics.refused_batches.labels("overload").inc()
            raise Overloaded(
                f"ingest is at capacity ({self.limit} batches in flight or queued in this "
                "process); nothing was stored, retry after the Retry-After delay",
                self.retry_after,
            )
        self.pending += 1
        self.metrics.pending_batches.inc()
        try:
            yield
        finally:
            self.pending -= 1
            self.metrics.pending_batches.dec()
