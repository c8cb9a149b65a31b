"""The gateway: the service runs the stack itself (`POST /v1/infer`), gates around it.

The stack is a `module:callable` taking the request's input and returning a JSON answer,
instrumented with the SDK or not. The gateway opens the request scope itself, with the
service's own policy set as inline gates, and hands the records to ingest in-process (no
loopback HTTP), so a gateway request is recorded exactly as an SDK request is. Its SDK client
assigns requests to the project's running experiments as SDKs do from the bundle: read from
the store at start, again when this process creates or stops one, and at most
`EXPERIMENTS_REFRESH_SECONDS` after another process did (an SDK's bundle refresh period).

A stack that has a `start(environment)` attribute is started once, with the SDK client
active and outside any request, before it serves: the model versions it declares there apply
to every request, and it reads MLflow where the service's settings say (`StackEnvironment`).
A stack that cannot start is retried on the next request; until it starts, `POST /v1/infer`
answers 503 with the reason and records nothing (the input was never run).

What is stored for a request:
- refused before any gate (malformed body, another project's key, the stack not started):
  nothing;
- denied by a `pre_request` policy, before the stack ran: the request, outcome `denied`, with
  the evaluation that denied it (the decision is governance evidence);
- denied later (a policy reading the parsed intent, or a `post_decision` one): the request
  with the stages that ran, outcome `denied`;
- failed inside the stack: the request, outcome `error`, its status naming the exception; the
  answer is 500 with the same reason and the request's id.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

import collectors
from app import entry_points
from app.audit.erasure import Vault
from app.config import Settings
from app.errors import BadRequest, NotFound, WardenError
from app.experiments import configs as experiments
from app.ingest.otlp import PROTOBUF
from app.ingest.pipeline import ingest_traces
from app.metrics import Metrics
from app.store.engine import read_connection
from app.store.tables import Review
from app.tenancy import projects
from app.tenancy.projects import Principal
from policies import PolicySet

log = logging.getLogger("warden.gateway")
EXPERIMENTS_REFRESH_SECONDS = 30.0


class StackUnavailable(WardenError):
    """The stack could not start; nothing was run or stored."""

    status_code = 503


@dataclass(frozen=True)
class StackEnvironment:
    """What a stack's `start(environment)` is told: where the service keeps its data."""

    mlflow_tracking_uri: str
    data_dir: Path


class InProcessSender:
    """Delivers the gateway's export payloads straight to ingest, under its project."""

    def __init__(
        self, engine: Engine, vault: Vault, metrics: Metrics, project_id: int, limit: int
    ) -> None:
        self.engine = engine
        self.vault = vault
        self.metrics = metrics
        self.project_id = project_id
        self.limit = limit

    def send(self, url: str, payload: bytes, content_type: str | None = None) -> collectors.Result:
        if content_type:  # sampled tensors: not taken by the gateway
            return collectors.Result(collectors.Outcome.REJECTED, message="no tensors in-process")
        try:
            result = ingest_traces(
                self.engine,
                self.vault,
                self.metrics,
                self.project_id,
                payload,
                PROTOBUF,
                None,
                self.limit,
            )
        except WardenError as exc:
            return collectors.Result(collectors.Outcome.REJECTED, message=exc.message)
        except SQLAlchemyError as exc:
            return collectors.Result(collectors.Outcome.RETRY, message=str(exc).splitlines()[0])
        return collectors.Result(collectors.Outcome.DELIVERED, rejected_spans=result.rejected)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Inference:
    request_id: str
    answer: Any | None = None
    denied: collectors.PolicyDenied | None = None
    review_id: int | None = None
    # The stack raised: the request is stored as an `error` with this reason.
    failed: str | None = None


class Gateway:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        vault: Vault,
        metrics: Metrics,
        policies: PolicySet,
    ) -> None:
        self.engine = engine
        self.stack = entry_points.load("WARDEN_STACK", settings.stack)
        self.environment = StackEnvironment(
            mlflow_tracking_uri=settings.resolved_mlflow_tracking_uri,
            data_dir=settings.data_dir,
        )
        self._start_lock = threading.Lock()
        self._started = False
        self.project_id = projects.project_id(engine, settings.stack_project)
        self._experiments_lock = threading.Lock()
        self._experiments_digest = ""
        self._experiments_at = 0.0
        self.client = collectors.init(
            endpoint="http://127.0.0.1",  # unused: the sender delivers in-process
            fingerprint_secret=settings.fingerprint_key(),
            spool_dir=settings.data_dir / "gateway-spool",
            service_name="warden-gateway",
            project=settings.stack_project,
            policies=policies,
            sender=InProcessSender(
                engine, vault, metrics, self.project_id, settings.payload_limit_bytes
            ),
            experiments=[],
        )
        self._load_experiments()
        try:
            self._start()
        except StackUnavailable as exc:
            # The service still serves everything else; the gateway retries on each request.
            log.error("%s", exc.message)

    def _start(self) -> None:
        """Start the stack once (with the SDK active, outside any request)."""
        with self._start_lock:
            if self._started:
                return
            start: Callable[[StackEnvironment], Any] | None = getattr(self.stack, "start", None)
            if start is not None:
                try:
                    start(self.environment)
                except Exception as exc:
                    reason = (str(exc).splitlines() or [""])[0]
                    raise StackUnavailable(
                        f"the stack could not start ({type(exc).__name__}: {reason}); "
                        "nothing was run or stored"
                    ) from exc
            self._started = True

    def experiments_changed(self, project_id: int) -> None:
        """An experiment of `project_id` was created or stopped in this process."""
        if project_id == self.project_id:
            self._load_experiments()

    def _load_experiments(self) -> None:
        with self._experiments_lock:
            entries, digest = experiments.bundle(self.engine, self.project_id)
            if digest != self._experiments_digest:
                self.client.use_experiments(entries)
                self._experiments_digest = digest
            self._experiments_at = time.monotonic()

    def infer(self, principal: Principal, body: Any) -> Inference:
        if principal.project_id != self.project_id:
            raise NotFound("this service runs no stack for this project")
        if not isinstance(body, dict) or "input" not in body:
            raise BadRequest('send {"input": ..., "subject": optional}')
        subject = body.get("subject")
        self._start()
        if time.monotonic() - self._experiments_at > EXPERIMENTS_REFRESH_SECONDS:
            self._load_experiments()
        denied = None
        failed = None
        answer = None
        # The gateway names the request itself: a pre_request deny ends the scope before the
        # scope could hand out its id.
        given_id = uuid.uuid4().hex
        request_id = collectors.request_trace_id(given_id) or ""
        try:
            with collectors.request(
                body["input"], subject if isinstance(subject, str) else None, request_id=given_id
            ) as req:
                answer = self.stack(body["input"])
                if isinstance(answer, dict) and isinstance(answer.get("kind"), str):
                    req.set_outcome(answer["kind"])
        except collectors.PolicyDenied as exc:
            denied = exc
        except Exception as exc:  # the stack's own failure: stored as `error`, said back
            log.exception("the stack failed on request %s", request_id)
            failed = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        # The record is delivered in-process by the export thread: wait for it, so the
        # answer can name the review item it made; never for shadow runs, which run after
        # the answer and must not delay it.
        collectors.flush(timeout=10, shadows=False)
        with read_connection(self.engine) as conn:
            review = conn.execute(
                select(Review.id).where(
                    Review.project_id == self.project_id, Review.trace_id == request_id
                )
            ).scalar_one_or_none()
        return Inference(request_id, answer, denied, review, failed)

    def close(self) -> None:
        collectors.shutdown()
