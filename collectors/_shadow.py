"""Shadow runs: a shadow arm's stack answering a live request's input after the live answer.

`collectors.shadow(arm, run)` inside a request attaches `run` to the live record. When the
live request's scope closes (its answer given), the run goes to one bounded background worker
thread of the SDK client. The worker runs it as the current record of a shadow trace of its
own (a root span `warden.shadow` linked to the live request), so the stage recorders and the
torch hooks record into the shadow, and exports it through the same pipeline as requests.

What the live path pays: a slot reserved in the queue when `shadow()` is called, a list append,
and two lock round-trips per request (an in-flight count) once a process uses shadows. The
worker starts a run only while no live request is in flight in the process, so shadows use
idle time; a run waits for idle at most `IDLE_WAIT` seconds, so a process that is never idle
still runs them (at the cost of sharing the CPU). A full queue drops the run and counts it:
`shadow()` never blocks. Policy gates never judge a shadow's decision (its answer is never
returned to anyone), so no `PolicyDenied` is raised into the worker either.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from opentelemetry import context as otel_context

from collectors import _client
from collectors import conventions as wire
from collectors._record import RequestRecord, trace_id_for
from collectors._scope import _close, _current, attach, current_record
from collectors.experiments import ShadowArm

log = logging.getLogger("warden.collectors")

# How long a queued run waits for the process to be idle before it runs anyway.
IDLE_WAIT = 0.25
# Namespace of the shadow trace ids derived from a live trace id (never a fingerprint key).
_NAMESPACE = b"warden.shadow"


@dataclass
class ShadowCounters:
    """Shadow runs `queued` (accepted), `run` (finished), `failed` (raised), `dropped` (the
    queue was full, or the client stopped before they ran): every queued run ends as run,
    failed or, at shutdown only, dropped."""

    queued: int = 0
    run: int = 0
    failed: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class _Pending:
    live_trace_id: bytes
    models: dict[str, Any]
    arm: ShadowArm
    run: Callable[[], Any]


def shadow_trace_id(live_trace_id: bytes, arm: ShadowArm) -> bytes:
    """The shadow run's trace id: the same for the same live request and arm, so a resend
    (or a re-run of the live request under its request id) is stored once."""
    return trace_id_for(f"{live_trace_id.hex()}:{arm.experiment}:{arm.name}", _NAMESPACE)


class ShadowWorker:
    """The bounded queue of shadow runs and the one thread that runs them."""

    def __init__(self, client: _client.Client) -> None:
        self.client = client
        self.capacity = max(client.config.shadow_queue, 1)
        self.counters = ShadowCounters()
        self._cond = threading.Condition()
        self._queue: collections.deque[_Pending] = collections.deque()
        self._reserved = 0  # slots taken by open live requests, not handed over yet
        self._running = 0
        self._in_flight = 0  # live requests open in this process
        self._urgent = 0  # flushes waiting: run without waiting for idle
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="warden-shadow", daemon=True)
        self._thread.start()

    # -- the live path ---------------------------------------------------------------------

    def enter(self) -> None:
        with self._cond:
            self._in_flight += 1

    def leave(self) -> None:
        with self._cond:
            self._in_flight -= 1
            if not self._in_flight and self._queue:
                self._cond.notify_all()

    def reserve(self) -> bool:
        """A slot for one more run, or False (counted as dropped) when the queue is full."""
        with self._cond:
            if self._stopping or len(self._queue) + self._reserved >= self.capacity:
                self.counters.dropped += 1
                return False
            self._reserved += 1
            self.counters.queued += 1
            return True

    def hand_over(self, record: RequestRecord) -> None:
        """The live request's scope closed: its shadow runs may start."""
        scheduled = record.shadows or []
        record.shadows = None
        models = {k: v for k, v in record.attributes.items() if k.startswith(wire.MODEL_PREFIX)}
        with self._cond:
            self._reserved -= len(scheduled)
            for arm, run in scheduled:
                if self._stopping:
                    self.counters.dropped += 1
                    continue
                self._queue.append(_Pending(record.trace_id, models, arm, run))
            self._cond.notify_all()

    # -- flush and shutdown ----------------------------------------------------------------

    def drain(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) until every run handed over has finished, without
        waiting for idle time meanwhile. True if none is left."""
        if threading.current_thread() is self._thread:
            return False  # a run that flushes cannot wait for itself
        with self._cond:
            self._urgent += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(
                    lambda: not self._queue and not self._running, timeout=timeout
                )
            finally:
                self._urgent -= 1

    def stop(self, timeout: float) -> None:
        """Run what is queued (within `timeout`), then stop; what is left is dropped."""
        self.drain(timeout)
        with self._cond:
            self._stopping = True
            left = len(self._queue)
            self._queue.clear()
            self.counters.dropped += left
            self._cond.notify_all()
        if left:
            log.warning("Warden dropped %d shadow runs that had not run at shutdown", left)

    # -- the worker thread -----------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stopping)
                if self._stopping:
                    return
                deadline = time.monotonic() + IDLE_WAIT
                while self._in_flight and not self._urgent and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._cond.wait(left):
                        break
                if not self._queue:
                    continue
                item = self._queue.popleft()
                self._running += 1
            ok = False
            try:
                ok = self._run(item)
            finally:
                with self._cond:
                    self._running -= 1
                    if ok:
                        self.counters.run += 1
                    else:
                        self.counters.failed += 1
                    self._cond.notify_all()

    def _run(self, item: _Pending) -> bool:
        """One shadow run as the current record of its own trace; True unless it raised."""
        arm = item.arm
        record = RequestRecord(wire.SHADOW_SPAN, shadow_trace_id(item.live_trace_id, arm))
        attrs = record.attributes
        attrs[wire.SHADOW_REQUEST] = item.live_trace_id.hex()
        attrs[wire.SHADOW_EXPERIMENT] = arm.experiment
        attrs[wire.SHADOW_ARM] = arm.name
        # The live request's models; the run names those the shadow arm replaces.
        attrs.update(item.models)
        failure: BaseException | None = None
        token, otel_token = attach(record)
        try:
            item.run()
        except BaseException as exc:  # a shadow's failure is recorded, never raised anywhere
            failure = exc
            log.warning("Warden shadow run %s/%s failed: %r", arm.experiment, arm.name, exc)
        finally:
            _current.reset(token)
            otel_context.detach(otel_token)
            try:
                _close(self.client, record, failure)
            except Exception:
                log.exception("Warden could not record a shadow run")
        return failure is None


_start_lock = threading.Lock()


def _worker(client: _client.Client) -> ShadowWorker:
    with _start_lock:
        if client.shadows is None:
            client.shadows = ShadowWorker(client)
        return client.shadows


def shadow(arm: ShadowArm, run: Callable[[], Any]) -> bool:
    """Run `run` for the shadow arm `arm` after the current request's answer is given.

    Call it inside `collectors.request(...)` with a shadow arm the request was sampled for
    (`req.assignment(stage).shadows`). `run` is kept with the request and handed, when the
    request's scope closes, to one background worker thread that runs it while no live
    request is in flight. Inside `run`, `collectors.decision`, `collectors.features`,
    `collectors.model`, `llm_call`, `stage` and the `watch` hooks record into the shadow's
    own trace (a `warden.shadow` root span linked to the live request), and a
    `collectors.request(...)` opened inside joins it, so the stack's own instrumented code can
    run unchanged (`req.set_outcome` sets the shadow's outcome). Whatever `run` returns is
    discarded; an exception is recorded as the shadow's error and counted as `failed`. Policy
    gates do not judge a shadow's decision. Returns False, having scheduled nothing, outside
    a request, without a client, inside a shadow run, for an arm already scheduled in this
    request, or when the shadow queue (`shadow_queue`, default 64) is full (counted as
    `dropped`): it never blocks. `collectors.flush()` waits for scheduled runs to finish.

    >>> with collectors.request({"text": text}, subject="u-17") as req:       # doctest: +SKIP
    ...     answer = assistant.handle(text)
    ...     for arm in req.assignment("world_model").shadows:
    ...         collectors.shadow(arm, lambda arm=arm: challenger(arm.model).handle(text))
    True
    """
    record = current_record()
    client = _client.active()
    if record is None or client is None or client.pipeline is None:
        return False
    if record.name == wire.SHADOW_SPAN:
        return False  # no shadow of a shadow
    if record.shadows and any(
        (a.experiment, a.name) == (arm.experiment, arm.name) for a, _ in record.shadows
    ):
        return False  # once per arm and request: the shadow's trace id is per arm
    worker = client.shadows or _worker(client)
    if not worker.reserve():
        return False
    if record.shadows is None:
        record.shadows = []
    record.shadows.append((arm, run))
    return True
