"""From finished records to the service: a bounded queue, one export thread, the spool.

The request path only puts a record on the queue. The export thread batches records, encodes
them to OTLP and posts them; when the service is unreachable or answers 429/502/503/504 it
writes the batch to the spool instead and retries from there with exponential backoff,
honouring `Retry-After`. Answers that retrying cannot fix are kept aside and counted.
Nothing is dropped unless the spool itself is full, and that is counted and logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan

from collectors import conventions as wire
from collectors._config import Config
from collectors._record import RequestRecord, encode
from collectors._spool import Spool, SpooledBatch
from collectors._transport import Outcome, Result, Sender, Transport

log = logging.getLogger("warden.collectors")
_TRACES = "traces"
_MAX_BACKOFF = 30.0


@dataclass
class Counters:
    """What the SDK did with the spans it recorded (see `collectors.stats()`)."""

    queued: int = 0
    exported: int = 0
    spooled: int = 0
    replayed: int = 0
    rejected: int = 0
    dropped: int = 0
    export_failures: int = 0
    tensors_exported: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)


class Pipeline:
    def __init__(
        self, config: Config, resource: dict[str, Any], sender: Sender | None = None
    ) -> None:
        self.config = config
        self.resource = resource
        self.counters = Counters()
        self.spool = Spool(config.spool_dir, config.spool_max_bytes)
        self.transport: Sender = sender or Transport(config.api_key, config.export_timeout)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=config.queue_size)
        self._lock = threading.Lock()
        self._backoff = 0.5
        self._retry_at = 0.0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="warden-export", daemon=True)
        self._thread.start()

    # -- the request path ------------------------------------------------------------------

    def submit(self, item: RequestRecord | ReadableSpan) -> None:
        """Hand a finished record (or a foreign OTel span) over; never blocks on the network."""
        spans = item.span_count() if isinstance(item, RequestRecord) else 1
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            # The export thread is behind: keep the record on disk rather than drop it.
            self._spool_now([item], spans, self.config.spool_write_timeout)
        else:
            self._count("queued", spans)

    def submit_durable(self, record: RequestRecord) -> bool:
        """Fail-closed mode: the record is on disk when this returns True."""
        spans = record.span_count()
        payload = self._encode([record])
        if self.spool.put(_TRACES, payload, spans):
            self._count("spooled", spans)
            return True
        return False

    def has_capacity(self) -> bool:
        return self.spool.free_bytes() > 64 * 1024

    def _spool_now(self, items: list[Any], spans: int, timeout: float | None) -> None:
        try:
            payload = self._encode(items)
        except Exception:
            log.exception("Warden could not encode a record; it is dropped")
            self._count("dropped", spans)
            return
        if self.spool.put(_TRACES, payload, spans, timeout):
            self._count("spooled", spans)
        else:
            self._count("dropped", spans)

    def _count(self, name: str, n: int) -> None:
        with self._lock:
            setattr(self.counters, name, getattr(self.counters, name) + n)

    # -- the export thread -----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            items, flushes = self._take()
            try:
                if items:
                    self._deliver(items)
                if not self._stopping.is_set():
                    self._replay()
            except Exception:
                log.exception("Warden export thread error (it keeps running)")
            for flush in flushes:
                flush.done.set()
            if self._stopping.is_set() and self._queue.empty():
                return

    def _take(self) -> tuple[list[Any], list[_Flush]]:
        items: list[Any] = []
        flushes: list[_Flush] = []
        spans = 0
        deadline = time.monotonic() + self.config.flush_interval
        while spans < self.config.max_batch_spans:
            timeout = deadline - time.monotonic()
            try:
                item = (
                    self._queue.get(timeout=max(timeout, 0.0))
                    if timeout > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if isinstance(item, _Flush):
                flushes.append(item)
                deadline = 0  # a flush wants what is queued now, not more waiting
                continue
            items.append(item)
            spans += item.span_count() if isinstance(item, RequestRecord) else 1
        return items, flushes

    def _encode(self, items: list[Any]) -> bytes:
        records = [i for i in items if isinstance(i, RequestRecord)]
        foreign = [i for i in items if not isinstance(i, RequestRecord)]
        self._upload_tensors(records)
        return encode(records, encode_spans(foreign) if foreign else None, self.resource)

    def _deliver(self, items: list[Any]) -> None:
        spans = sum(i.span_count() if isinstance(i, RequestRecord) else 1 for i in items)
        payload = self._encode(items)
        if time.monotonic() < self._retry_at:
            self._to_spool(payload, spans)
            return
        try:
            result = self.transport.send(self.config.traces_url, payload)
        except Exception as exc:
            # Whatever went wrong, the spans were accepted from the caller: keep them.
            log.exception("Warden export failed unexpectedly; the batch is spooled")
            result = Result(Outcome.RETRY, message=f"{type(exc).__name__}: {exc}")
        if result.outcome is Outcome.DELIVERED:
            self._count("exported", spans - result.rejected_spans)
            self._count("rejected", result.rejected_spans)
            self._backoff = 0.5
        elif result.outcome is Outcome.RETRY:
            self._count("export_failures", 1)
            self._schedule_retry(result.retry_after, result.message)
            self._to_spool(payload, spans)
        else:
            self._count("rejected", spans)
            log.error("Warden refused a batch of %d spans for good: %s", spans, result.message)
            self.spool.put(_TRACES, payload, spans, rejected=result.message)

    def _to_spool(self, payload: bytes, spans: int) -> None:
        if self.spool.put(_TRACES, payload, spans):
            self._count("spooled", spans)
        else:
            self._count("dropped", spans)

    def _schedule_retry(self, retry_after: float | None, message: str) -> None:
        if retry_after is not None:
            # The service said how long: never sooner (in between, new batches go to the
            # spool unsent), plus a little jitter so refused processes do not all come
            # back in the same instant.
            delay = retry_after * (1 + random.random() / 10)
        else:
            delay = min(self._backoff * (1 + random.random() / 2), _MAX_BACKOFF * 4)
        self._retry_at = time.monotonic() + delay
        self._backoff = min(self._backoff * 2, _MAX_BACKOFF)
        log.warning("Warden service unavailable (%s); retrying in %.1fs", message, delay)

    def _replay(self) -> None:
        """Send spooled batches again, oldest first, until the spool is empty, a send fails,
        or a second has passed (new records must not wait behind a long backlog)."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and time.monotonic() >= self._retry_at:
            claimed = self.spool.claim(64, lease=max(60.0, self.config.export_timeout * 8))
            if not claimed:
                return
            for group in _groups(claimed):
                if time.monotonic() < self._retry_at:
                    for batch in group:
                        self.spool.release(batch.id)
                    continue
                self._replay_group(group)

    def _replay_group(self, group: list[SpooledBatch]) -> None:
        first = group[0]
        if first.path == _TRACES:
            # Serialised protobuf messages concatenate into one message with every
            # repeated field merged: one POST carries many spooled batches.
            url, payload, kind = self.config.traces_url, b"".join(b.payload for b in group), None
        else:
            url, payload = f"{self.config.tensors_url}/{first.path}", first.payload
            kind = "application/octet-stream"
        spans = sum(b.spans for b in group)
        result = self.transport.send(url, payload, kind)
        if result.outcome is Outcome.DELIVERED:
            for batch in group:
                self.spool.delete(batch.id)
            self._count("replayed", spans - result.rejected_spans)
            self._count("rejected", result.rejected_spans)
            self._backoff = 0.5
        elif result.outcome is Outcome.RETRY:
            for batch in group:
                self.spool.release(batch.id)
            self._count("export_failures", 1)
            self._schedule_retry(result.retry_after, result.message)
        elif len(group) > 1:
            # One bad batch must not take the others down with it: try them one by one.
            for batch in group:
                self._replay_group([batch])
        else:
            self.spool.reject(first.id, result.message)
            self._count("rejected", spans)
            log.error("Warden refused %d spooled spans for good: %s", spans, result.message)

    def _upload_tensors(self, records: list[RequestRecord]) -> None:
        """Sampled full tensors: content-addressed, sent from this thread, spooled on failure."""
        for record in records:
            sampled, record.tensors = record.tensors, ()
            for item in sampled:
                payload = _npy(item.tensor)
                digest = hashlib.sha256(payload).hexdigest()
                item.attributes[wire.STATE_TENSOR_SHA256] = digest
                result = self.transport.send(
                    f"{self.config.tensors_url}/{digest}", payload, "application/octet-stream"
                )
                if result.outcome is Outcome.DELIVERED:
                    self._count("tensors_exported", 1)
                elif result.outcome is Outcome.RETRY:
                    self.spool.put(digest, payload, 0)

    # -- control ---------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0, include_spool: bool = False) -> bool:
        """Wait until everything queued now is delivered or spooled (and, with
        `include_spool`, until the spool is empty too). True when that happened in time."""
        deadline = time.monotonic() + timeout
        marker = _Flush()
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        if not marker.done.wait(max(0.0, deadline - time.monotonic())):
            return False
        while include_spool and self.spool.pending()[0]:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
            if time.monotonic() >= self._retry_at:
                marker = _Flush()
                self._queue.put(marker)
                marker.done.wait(max(0.0, deadline - time.monotonic()))
        return True

    def shutdown(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        self._stopping.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_Flush())
        self._thread.join(timeout)
        self.transport.close()
        self.spool.close()


_REPLAY_BYTES = 4 << 20


def _groups(batches: list[SpooledBatch]) -> list[list[SpooledBatch]]:
    """Trace batches in runs of up to 4 MiB; each tensor upload on its own."""
    groups: list[list[SpooledBatch]] = []
    run: list[SpooledBatch] = []
    size = 0
    for batch in batches:
        if batch.path != _TRACES:
            groups.append([batch])
            continue
        if run and size + len(batch.payload) > _REPLAY_BYTES:
            groups.append(run)
            run, size = [], 0
        run.append(batch)
        size += len(batch.payload)
    if run:
        groups.append(run)
    return groups


def _npy(tensor: Any) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, tensor.float().cpu().numpy(), allow_pickle=False)
    return buffer.getvalue()
