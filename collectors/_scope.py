"""The request scope and the stage recorders that write into it.

The current request lives in a `contextvars.ContextVar`, so it follows the code into asyncio
tasks (which copy the context when created) and into threads started with a copied context
(`contextvars.copy_context().run`), and concurrent requests never see each other's record.
Instrumentation errors are logged, never raised into the caller's code.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from collectors import _client
from collectors import conventions as wire
from collectors._client import ModelRef
from collectors._record import ChildSpan, RequestRecord, trace_id_for
from collectors.errors import ConfigurationError, RecordNotDurable
from collectors.experiments import Assignment
from collectors.fingerprint import canonical_json, fingerprint
from policies import PolicyDenied, Verdict, strongest

log = logging.getLogger("warden.collectors")
F = TypeVar("F", bound=Callable[..., Any])

_current: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar(
    "warden_request", default=None
)


def current_record() -> RequestRecord | None:
    return _current.get()


class Request:
    """Handle of the request being recorded (what `with collectors.request(...)` gives)."""

    __slots__ = ("_record",)

    def __init__(self, record: RequestRecord | None) -> None:
        self._record = record

    @property
    def trace_id(self) -> str | None:
        """The request's id in Warden: its trace id, as hex."""
        return self._record.trace_id.hex() if self._record else None

    @property
    def fingerprint(self) -> str | None:
        return self._record.attributes.get(wire.REQUEST_FINGERPRINT) if self._record else None

    def assignment(self, stage: str) -> Assignment | None:
        """The arm of the running experiment that serves `stage` (`world_model`, `planner`)
        of this request, with the shadow arms sampled for it; None when no experiment varies
        that stage. Decided when the request opened: the same unit always gets the same arm.

        >>> with collectors.request(payload, subject="u-17") as req:       # doctest: +SKIP
        ...     arm = req.assignment("world_model")
        ...     model = models[arm.model] if arm else champion
        """
        return self._record.assignments.get(stage) if self._record else None

    def set_outcome(self, outcome: str) -> None:
        """What the stack answered, e.g. `booked`, `clarify`, `denied`."""
        self.set_attribute(wire.REQUEST_OUTCOME, outcome)

    def set_attribute(self, key: str, value: Any) -> None:
        if self._record is not None:
            self._record.attributes[key] = value


@contextmanager
def request(
    input: Any,
    subject: str | None = None,
    *,
    request_id: str | None = None,
    name: str = wire.REQUEST_SPAN,
    capture_input: bool = False,
) -> Iterator[Request]:
    """Record one request of the stack: every stage recorded inside lands in it.

    The input is fingerprinted (HMAC-SHA256 of its canonical JSON); it is exported itself
    only with `capture_input=True`. Opened inside another request, it joins that one. A
    `request_id` makes the request's ids deterministic, so recording the same request twice
    (a retry) stores it once.

    >>> with collectors.request({"text": "a room for 6 tomorrow 3-5pm"}, subject="u-17") as req:
    ...     answer = assistant.handle(text)  # doctest: +SKIP
    ...     req.set_outcome(answer.kind)
    """
    client = _client.active()
    if client is None or client.pipeline is None:
        yield Request(None)
        return
    outer = _current.get()
    if outer is not None:
        # A request inside a request (a gateway around an instrumented stack) is the same one.
        yield Request(outer)
        return
    if client.config.fail_closed and not client.pipeline.has_capacity():
        raise RecordNotDurable("Warden spool is full: refusing to run a request unrecorded")
    record, token, otel_token = _open(client, input, subject, request_id, name, capture_input)
    # Shadow runs use the time no live request is in flight (collectors/_shadow.py).
    gate = client.shadows
    if gate is not None:
        gate.enter()
    failure: BaseException | None = None
    try:
        _pre_request_gates(client, record, input, subject)
        yield Request(record)
    except BaseException as exc:
        failure = exc
        raise
    finally:
        _current.reset(token)
        otel_context.detach(otel_token)
        durable = _close(client, record, failure)
        if gate is not None:
            gate.leave()
        if not durable and failure is None:
            raise RecordNotDurable(
                "fail-closed: the record of this request could not be made durable"
            )


def _open(
    client: _client.Client,
    input: Any,
    subject: str | None,
    request_id: str | None,
    name: str,
    capture_input: bool,
) -> tuple[RequestRecord, contextvars.Token[RequestRecord | None], contextvars.Token[Any]]:
    config = client.config
    trace_id = trace_id_for(request_id, config.fingerprint_secret) if request_id else None
    record = RequestRecord(name, trace_id)
    attrs = record.attributes
    try:
        attrs[wire.REQUEST_FINGERPRINT] = fingerprint(input, config.fingerprint_secret)
        if capture_input:
            attrs[wire.REQUEST_INPUT] = canonical_json(input).decode()
    except (TypeError, ValueError) as exc:
        log.warning("Warden could not fingerprint the input (%s); recorded without one", exc)
    attrs[wire.REQUEST_FINGERPRINT_KEY_ID] = config.fingerprint_key_id
    if subject is not None:
        attrs[wire.REQUEST_SUBJECT] = subject
    if request_id is not None:
        attrs[wire.REQUEST_ID] = request_id
    attrs.update(client.model_attributes)
    try:
        assigned = client.experiments.assign(subject, record.trace_id.hex(), attrs)
    except Exception:  # e.g. a subject that is not a string: recorded, unassigned
        log.exception("Warden could not assign the request to its experiments")
        assigned = None
    if assigned is not None:
        record.assignments = assigned
    token, otel_token = attach(record)
    return record, token, otel_token


def attach(
    record: RequestRecord,
) -> tuple[contextvars.Token[RequestRecord | None], contextvars.Token[Any]]:
    """Make `record` the current one (and the OpenTelemetry parent) in this context."""
    token = _current.set(record)
    # Spans of other OpenTelemetry instrumentation inside the request become its children.
    parent = trace.NonRecordingSpan(
        trace.SpanContext(
            int.from_bytes(record.trace_id, "big"),
            int.from_bytes(record.span_id, "big"),
            is_remote=False,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        )
    )
    return token, otel_context.attach(trace.set_span_in_context(parent))


def _close(client: _client.Client, record: RequestRecord, failure: BaseException | None) -> bool:
    """Finish and hand over the record; False only when fail-closed could not spool it."""
    record.end_ns = time.time_ns()
    if isinstance(failure, PolicyDenied):
        record.attributes[wire.REQUEST_OUTCOME] = "denied"
    elif failure is not None:
        record.status = (Status.STATUS_CODE_ERROR, f"{type(failure).__name__}: {failure}")
        record.attributes.setdefault(wire.REQUEST_OUTCOME, "error")
    pipeline = client.pipeline
    if pipeline is None:
        return not client.config.fail_closed
    try:
        if record.captures:
            from collectors.torch import summarise

            summarise(record)
        if client.config.fail_closed:
            return pipeline.submit_durable(record)
        pipeline.submit(record)
    except Exception:
        log.exception("Warden could not record a request")
        return not client.config.fail_closed
    finally:
        # Only now, the live answer given, may its shadow runs start.
        if record.shadows and client.shadows is not None:
            client.shadows.hand_over(record)
    return True


def recorded(
    fn: F | None = None, *, input_arg: str | None = None, subject_arg: str | None = None
) -> Any:
    """Decorator form of `request()`: the function's first argument (or `input_arg`) is the
    input. Works on plain and `async` functions.

    >>> @collectors.recorded
    ... def handle(text: str) -> str: ...
    """

    def wrap(func: F) -> F:
        signature = inspect.signature(func)

        def scope_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
            bound = signature.bind_partial(*args, **kwargs)
            names = list(signature.parameters)
            key = input_arg or (names[0] if names else None)
            value = bound.arguments.get(key) if key else None
            return value, bound.arguments.get(subject_arg) if subject_arg else None

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                value, subject = scope_args(args, kwargs)
                with request(value, subject, name=func.__name__):
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            value, subject = scope_args(args, kwargs)
            with request(value, subject, name=func.__name__):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return wrap(fn) if fn is not None else wrap


class LLMCall:
    """Handle of `collectors.llm_call()`: record the response when it arrives."""

    __slots__ = ("_span",)

    def __init__(self, span: ChildSpan | None) -> None:
        self._span = span

    def record(
        self,
        response_model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        **attributes: Any,
    ) -> None:
        if self._span is None:
            return
        attrs = self._span.attributes
        if response_model is not None:
            attrs[wire.GEN_AI_RESPONSE_MODEL] = response_model
        if input_tokens is not None:
            attrs[wire.GEN_AI_USAGE_INPUT_TOKENS] = input_tokens
        if output_tokens is not None:
            attrs[wire.GEN_AI_USAGE_OUTPUT_TOKENS] = output_tokens
        attrs.update(attributes)


@contextmanager
def llm_call(
    system: str, request_model: str, operation: str = "chat", **attributes: Any
) -> Iterator[LLMCall]:
    """Record the language-model stage (OTel GenAI attributes) and its latency.

    >>> with collectors.llm_call(system="openai", request_model="gpt-4o-mini") as call:
    ...     reply = client.chat(...)  # doctest: +SKIP
    ...     call.record(response_model=reply.model, input_tokens=reply.usage.prompt_tokens,
    ...                 output_tokens=reply.usage.completion_tokens)
    """
    record = _current.get()
    span = None
    if record is not None:
        span = record.child(wire.llm_span(operation, request_model), Span.SPAN_KIND_CLIENT)
        span.attributes.update(
            {
                wire.GEN_AI_OPERATION_NAME: operation,
                wire.GEN_AI_SYSTEM: system,
                wire.GEN_AI_REQUEST_MODEL: request_model,
                **attributes,
            }
        )
    try:
        yield LLMCall(span)
    except BaseException as exc:
        if span is not None:
            span.status = (Status.STATUS_CODE_ERROR, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if span is not None:
            span.end_ns = time.time_ns()


@contextmanager
def stage(name: str, **attributes: Any) -> Iterator[None]:
    """Time any other step of the request as a span of its own.

    >>> with collectors.stage("calendar.lookup", rooms=12):
    ...     free = calendar.free_slots(day)  # doctest: +SKIP
    """
    record = _current.get()
    span = record.child(name) if record is not None else None
    if span is not None:
        span.attributes.update(attributes)
    try:
        yield
    finally:
        if span is not None:
            span.end_ns = time.time_ns()


def features(values: Mapping[str, float | int | str | bool | None]) -> None:
    """Record the request's structured input (the intent the language model extracted) as
    flat named features: what input drift is measured on.

    Numbers are numerical features, strings and booleans categorical; a None (a field the
    request did not say) is left out. Name them as the columns of the training dataset the
    world model's MLflow run logged, so that dataset can be the drift reference.

    >>> collectors.features({"intent_people": 0.3, "intent_needs_video": True})  # doctest: +SKIP
    """
    record = _current.get()
    if record is None:
        return
    kept: dict[str, float | int | str | bool] = {}
    for key, value in values.items():
        if value is None:
            continue
        if not isinstance(key, str) or not isinstance(value, float | int | str | bool):
            raise TypeError(
                f"feature {key!r}: values must be numbers, strings or booleans, "
                f"not {type(value).__name__}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            continue  # JSON has no NaN; a missing value is what it means
        kept[key] = value
    record.attributes[wire.INPUT_FEATURES] = json.dumps(kept, separators=(",", ":"))


def request_trace_id(request_id: str) -> str | None:
    """The id (hex trace id) of the request recorded with `request_id=`, known before the
    request opens, e.g. to name a request its `pre_request` gates denied; None with no client.

    >>> collectors.request_trace_id("order-1234")  # doctest: +SKIP
    '5f0c...'
    """
    client = _client.active()
    if client is None:
        return None
    return trace_id_for(request_id, client.config.fingerprint_secret).hex()


def intent(values: Mapping[str, Any]) -> None:
    """Give the policies the structured intent the language model parsed from the input: the
    `pre_request` policies that read `request.intent` are evaluated again with it, here (their
    evaluation on the input alone is replaced), so a deny raises `PolicyDenied` before the rest
    of the stack runs. Call it right after parsing.

    >>> collectors.intent({"people": 60, "duration_hours": 2})  # doctest: +SKIP
    Traceback (most recent call last):
    collectors.errors.PolicyDenied: input-limits: request outside limits ...
    """
    record = _current.get()
    client = _client.active()
    if record is None or client is None or client.gates is None or record.context is None:
        return
    if record.name == wire.SHADOW_SPAN:  # a shadow's input was judged on the live request
        return
    record.context["request"]["intent"] = dict(values)
    current = client.gates.policies
    if current is None:
        return
    # Only the policies that read the intent: the others judged this input when it opened.
    readers = [
        p.id for p in current.policies if p.phase.value == "pre_request" and "intent" in p.when
    ]
    verdicts = [v for pid in readers for v in current.evaluate("pre_request", record.context, pid)]
    # Their verdict on the input alone is superseded: one evaluation per policy per request.
    judged = {v.policy_id for v in verdicts}
    record.events[:] = [
        e
        for e in record.events
        if not (
            e[0] == wire.POLICY_EVENT
            and e[2].get(wire.POLICY_PHASE) == "pre_request"
            and e[2].get(wire.POLICY_ID) in judged
        )
    ]
    _enforce(record, record.events, verdicts)


def model(
    role: str, name: str, version: str | None = None, *, tracking_uri: str | None = None
) -> ModelRef:
    """Record which model version serves a stage (`llm`, `world_model`, `planner`, ...).

    Called at load time, it applies to every later request of the process; inside a request,
    to that request only. A `models:/name@alias` (or `models:/name/version`) MLflow URI is
    resolved to its version here, once (in the registry at `tracking_uri`, by default
    MLflow's own setting).

    >>> collectors.model("world_model", "models:/booking-world-model@champion")  # doctest: +SKIP
    ModelRef(role='world_model', name='booking-world-model', version='3')
    """
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = {}
    if name.startswith("models:/"):
        name, version, aliases, tags = _resolve_uri(name, tracking_uri)
    if version is None:
        raise ValueError("model() needs a version, or a models:/ URI to resolve one")
    ref = ModelRef(role, name, str(version), aliases, tags)
    record = _current.get()
    if record is not None:
        record.attributes[wire.model_name(role)] = ref.name
        record.attributes[wire.model_version(role)] = ref.version
    else:
        client = _client.active()
        if client is not None:
            client.use_model(ref)
    return ref


def _resolve_uri(
    uri: str, tracking_uri: str | None
) -> tuple[str, str, tuple[str, ...], dict[str, str]]:
    """Name, version, aliases and tags of a `models:/` URI, as the registry has them now."""
    try:
        from mlflow.tracking import MlflowClient
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"{uri!r}: resolving a models:/ URI needs MLflow, which is not installed here: "
            "pip install mlflow (or 'warden-collectors[mlflow]'), or name the version itself"
        ) from exc

    path = uri[len("models:/") :]
    mlflow = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if "@" in path:
        name, alias = path.split("@", 1)
        entry = mlflow.get_model_version_by_alias(name, alias)
    else:
        name, _, version = path.partition("/")
        if not version:
            raise ValueError(
                f"{uri!r}: name a version (models:/name/3) or an alias (models:/name@champion)"
            )
        entry = mlflow.get_model_version(name, version)
    return name, str(entry.version), tuple(entry.aliases or ()), dict(entry.tags or {})


def decision(
    candidates: list[dict[str, Any]],
    chosen: str | None,
    constraints: list[Any] | None = None,
    rationale: str | None = None,
    confidence: float | None = None,
) -> Verdict | None:
    """Record the planner's whole decision: every candidate, not only the winner.

    >>> collectors.decision(
    ...     candidates=[{"action": "room-3@15:00", "score": 0.91, "predicted": {"conflict": 0.02}},
    ...                 {"action": "room-5@15:00", "score": 0.40, "predicted": {"conflict": 0.31}}],
    ...     chosen="room-3@15:00", constraints=["capacity>=6"], confidence=0.87)  # doctest: +SKIP

    With policy gates on, the `post_decision` policies judge the decision here: a `deny`
    raises `PolicyDenied` (the stack falls back, e.g. to a person); otherwise the decisive
    verdict is returned (`require_review` marks the request for the review queue), or None.
    """
    record = _current.get()
    if record is None:
        return None
    try:
        span = record.child(wire.DECISION_SPAN)
        attrs = span.attributes
        attrs[wire.PLANNER_CANDIDATES] = json.dumps(candidates, default=float)
        if chosen is not None:
            attrs[wire.PLANNER_CHOSEN] = chosen
        attrs[wire.PLANNER_CONSTRAINTS] = json.dumps(constraints or [], default=str)
        if rationale is not None:
            attrs[wire.PLANNER_RATIONALE] = rationale
        if confidence is not None:
            attrs[wire.PLANNER_CONFIDENCE] = float(confidence)
    except (TypeError, ValueError):
        log.exception("Warden could not record a decision")
        return None
    client = _client.active()
    # A shadow's decision is never acted on, so no gate judges it (docs/experiments.md).
    if client is None or client.gates is None or record.name == wire.SHADOW_SPAN:
        return None
    predicted = next(
        (
            c.get("predicted")
            for c in candidates
            if isinstance(c, dict) and c.get("action") == chosen
        ),
        None,
    )
    context = {
        **(record.context or {"request": {}, "models": {}}),
        "decision": {
            "chosen": chosen,
            "confidence": confidence,
            "constraints": list(constraints or []),
            "rationale": rationale,
            "candidates": candidates,
            "scores": [c.get("score") for c in candidates if isinstance(c, dict)],
        },
        "predicted": predicted if isinstance(predicted, dict) else {},
        "project": client.config.project,
    }
    if not record.context:
        context["models"] = {role: ref.context() for role, ref in client.models.items()}
    return _enforce(record, span.events, client.gates.evaluate("post_decision", context))


def _pre_request_gates(
    client: _client.Client, record: RequestRecord, input: Any, subject: str | None
) -> None:
    if client.gates is None:
        return
    try:
        size = len(canonical_json(input))
    except (TypeError, ValueError):
        size = -1
    record.context = {
        "request": {
            "size": size,
            "subject": subject,
            "project": client.config.project,
            "input": input if isinstance(input, dict) else {},
        },
        "models": {role: ref.context() for role, ref in client.models.items()},
        "project": client.config.project,
    }
    _enforce(record, record.events, client.gates.evaluate("pre_request", record.context))


def _enforce(
    record: RequestRecord, events: list[tuple[str, int, dict[str, Any]]], verdicts: list[Verdict]
) -> Verdict | None:
    """Record every evaluation; raise on deny; mark a request that needs a person."""
    now = time.time_ns()
    for v in verdicts:
        events.append(
            (
                wire.POLICY_EVENT,
                now,
                {
                    wire.POLICY_ID: v.policy_id,
                    wire.POLICY_VERSION: v.version,
                    wire.POLICY_HASH: v.hash,
                    wire.POLICY_PHASE: v.phase,
                    wire.POLICY_OUTCOME: v.effect.value,
                    wire.POLICY_MESSAGE: v.message or None,
                },
            )
        )
    decisive = strongest(verdicts)
    if decisive is None:
        return None
    if decisive.effect == "deny":
        record.attributes[wire.REQUEST_OUTCOME] = "denied"
        record.attributes[wire.POLICY_DENIED_BY] = decisive.policy_id
        raise PolicyDenied(decisive.policy_id, decisive.version, decisive.message, decisive.hash)
    if decisive.effect == "require_review":
        record.attributes[wire.REVIEW_REQUIRED] = True
        record.attributes[wire.REVIEW_POLICY] = decisive.policy_id
    return decisive
