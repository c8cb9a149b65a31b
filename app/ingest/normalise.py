"""From OTLP spans to Warden's typed rows, by the names of docs/conventions.md (in code:
`collectors.conventions`, shared with the SDK that writes them).

Two steps, so that the store can normalise only the spans it actually inserted:
`span_rows` turns a parsed export request into rows of the `spans` table (rejecting spans
whose ids are invalid), and `normalise` derives the typed rows from stored span rows.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from app.ingest import genai
from app.ingest.decision_summary import summarise
from app.scores.spans import SpanScore, score_from_span
from collectors import conventions as wire

STATUS_NAMES = {0: "unset", 1: "ok", 2: "error"}
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)


_SCALARS = frozenset({"string_value", "int_value", "double_value", "bool_value"})


def any_value(value: AnyValue) -> Any:
    """The Python value of an OTLP `AnyValue` (bytes become base64 text, as in OTLP/JSON)."""
    kind = value.WhichOneof("value")
    if kind in _SCALARS:
        return getattr(value, kind)
    if kind == "array_value":
        values = value.array_value.values
        if values and values[0].WhichOneof("value") == "double_value":
            # Fast path for arrays of doubles (projections, summaries: most of a batch).
            # Reading `double_value` of an element that holds another kind gives 0.0, so
            # only the zeros need their kind checked to know the array is all doubles.
            doubles = [v.double_value for v in values]
            if 0.0 not in doubles or all(
                values[i].WhichOneof("value") == "double_value"
                for i, x in enumerate(doubles)
                if x == 0.0
            ):
                return doubles
        return [
            getattr(v, k) if (k := v.WhichOneof("value")) in _SCALARS else any_value(v)
            for v in values
        ]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return None


def attributes(items: Iterable[KeyValue]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in items:
        # `any_value`, with its commonest case (a scalar) inlined: this runs for every
        # attribute of every span, event and link.
        value = kv.value
        kind = value.WhichOneof("value")
        out[kv.key] = getattr(value, kind) if kind in _SCALARS else any_value(value)
    return out


@dataclass(slots=True)
class ParsedBatch:
    spans: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)


def span_rows(request: ExportTraceServiceRequest) -> ParsedBatch:
    """Rows for the `spans` table; a span with an invalid id is rejected with its reason.

    `world_model.state` events are set apart in `state_events`: they become
    `world_model_states` rows and are not stored a second time in the span's events.
    The JSON columns that the normalisation does not read are serialised here, once.
    """
    batch = ParsedBatch()
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        resource_json = orjson.dumps(resource).decode()
        service = resource.get(wire.SERVICE_NAME)
        service_name = str(service) if service is not None else None
        for scope_spans in resource_spans.scope_spans:
            scope_name = scope_spans.scope.name or None
            for span in scope_spans.spans:
                reason = _invalid_ids(span.trace_id, span.span_id, span.parent_span_id)
                if reason:
                    batch.rejections.append(f"span {span.name!r}: {reason}")
                    continue
                events = []
                states = []
                for e in span.events:
                    if e.name == wire.STATE_EVENT:
                        states.append((e.time_unix_nano, attributes(e.attributes)))
                    else:
                        events.append((e.name, e.time_unix_nano, attributes(e.attributes)))
                links = [
                    {
                        "trace_id": link.trace_id.hex(),
                        "span_id": link.span_id.hex(),
                        "attributes": attributes(link.attributes),
                    }
                    for link in span.links
                ]
                batch.spans.append(
                    {
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex() or None,
                        "name": span.name,
                        "kind": span.kind,
                        "start_time_unix_nano": span.start_time_unix_nano,
                        "end_time_unix_nano": span.end_time_unix_nano,
                        "status_code": span.status.code,
                        "status_message": span.status.message or None,
                        "service_name": service_name,
                        "scope_name": scope_name,
                        "attributes": attributes(span.attributes),
                        "events": events,
                        "state_events": states,
                        "events_json": orjson.dumps(
                            [
                                {"name": n, "time_unix_nano": t, "attributes": a}
                                for n, t, a in events
                            ]
                        ).decode()
                        if events
                        else "[]",
                        "links_json": orjson.dumps(links).decode() if links else "[]",
                        "resource_json": resource_json,
                        "body_digest": hashlib.sha256(span.SerializeToString()).digest(),
                    }
                )
    return batch


def _invalid_ids(trace_id: bytes, span_id: bytes, parent_span_id: bytes) -> str | None:
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
        return "trace_id must be 16 bytes and not all zero"
    if len(span_id) != 8 or span_id == _ZERO_SPAN:
        return "span_id must be 8 bytes and not all zero"
    if parent_span_id and len(parent_span_id) != 8:
        return "parent_span_id must be empty or 8 bytes"
    return None


@dataclass(slots=True)
class Normalised:
    requests: list[dict[str, Any]] = field(default_factory=list)
    request_models: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    policy_evaluations: list[dict[str, Any]] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    # Root spans carrying `warden.score.request`: scores, not requests (app/scores).
    scores: list[SpanScore] = field(default_factory=list)
    # Root spans of shadow runs (`warden.shadow.request`): never requests.
    shadow_runs: list[dict[str, Any]] = field(default_factory=list)
    request_experiments: list[dict[str, Any]] = field(default_factory=list)
    llm_calls: list[dict[str, Any]] = field(default_factory=list)
    retrievals: list[dict[str, Any]] = field(default_factory=list)
    # Requests of the batch the store gave a stage from a call stored before them.
    late_stages: set[str] = field(default_factory=set)
    # (name, version) -> [role, first seen, last seen]
    models: dict[tuple[str, str], list[Any]] = field(default_factory=dict)


def normalise(spans: Iterable[dict[str, Any]]) -> Normalised:
    """Typed rows derived from span rows (as made by `span_rows`)."""
    out = Normalised()
    for span in spans:
        attrs: dict[str, Any] = span["attributes"]
        models = _models(attrs)
        for role, (name, version) in models.items():
            see_model(out.models, name, version, role, span["start_time_unix_nano"])
        if span["parent_span_id"] is None:
            if wire.SCORE_REQUEST in attrs:
                out.scores.append(score_from_span(span, attrs))
            elif wire.SHADOW_REQUEST in attrs:
                out.shadow_runs.append(_shadow_run(span, attrs, models))
            else:
                _request(out, span, attrs, models)
        # Sequence numbers within the span keep re-sent spans idempotent row by row.
        seq = policy_seq = 0
        if wire.STATE_STEP in attrs:
            out.states.append(_state(span, attrs, seq, span["start_time_unix_nano"]))
            seq += 1
        if wire.POLICY_ID in attrs:
            out.policy_evaluations.append(
                _policy(span, attrs, policy_seq, span["start_time_unix_nano"])
            )
            policy_seq += 1
        for time, state in span["state_events"]:
            out.states.append(_state(span, state, seq, time))
            seq += 1
        for name, time, event_attrs in span["events"]:
            if name == wire.POLICY_EVENT:
                out.policy_evaluations.append(_policy(span, event_attrs, policy_seq, time))
                policy_seq += 1
        if wire.PLANNER_CHOSEN in attrs or wire.PLANNER_CANDIDATES in attrs:
            out.decisions.append(_decision(span, attrs))
        if wire.GEN_AI_REQUEST_MODEL in attrs or wire.GEN_AI_RESPONSE_MODEL in attrs:
            call = genai.llm_call(span)
            if call is not None:
                out.llm_calls.append(call)
        if (
            wire.GEN_AI_OPERATION_NAME in attrs
            or wire.GEN_AI_RETRIEVAL_DOCUMENTS in attrs
            or wire.OPENINFERENCE_SPAN_KIND in attrs
        ):
            out.retrievals.extend(genai.retrievals(span))
    if out.shadow_runs:
        _shadow_choices(out)
    if out.llm_calls:
        _llm_stages(out)
    return out


def _llm_stages(out: Normalised) -> None:
    """A request whose root span does not name its `llm` stage (`warden.model.llm.*`, which
    wins) gets its trace's first language-model call in the batch as that stage (the store
    looks for one stored before the request: app/ingest/store.py, `_late_stages`)."""
    first: dict[str, dict[str, Any]] = {}
    for call in out.llm_calls:
        seen = first.get(call["trace_id"])
        if call["stage"] and (
            seen is None or call["start_time_unix_nano"] < seen["start_time_unix_nano"]
        ):
            first[call["trace_id"]] = call
    requests = {r["trace_id"]: r for r in out.requests}
    for trace_id, call in first.items():
        request = requests.get(trace_id)
        if request is not None and genai.LLM_ROLE not in request["models"]:
            name, version = genai.stage_model(call)
            request["models"][genai.LLM_ROLE] = {"name": name, "version": version}
            out.request_models.append(
                {
                    "trace_id": trace_id,
                    "role": genai.LLM_ROLE,
                    "model_name": name,
                    "model_version": version,
                    "start_time_unix_nano": request["start_time_unix_nano"],
                }
            )
            see_model(out.models, name, version, genai.LLM_ROLE, call["start_time_unix_nano"])


def _models(attrs: dict[str, Any]) -> dict[str, tuple[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for key, value in attrs.items():
        if key.startswith(wire.MODEL_PREFIX):
            role, _, part = key[len(wire.MODEL_PREFIX) :].rpartition(".")
            if role and part in ("name", "version"):
                found.setdefault(role, {})[part] = str(value)
    return {
        role: (parts["name"], parts["version"])
        for role, parts in found.items()
        if parts.get("name") and parts.get("version")
    }


def see_model(
    seen: dict[tuple[str, str], list[Any]], name: str, version: str, role: str, time: int
) -> None:
    entry = seen.get((name, version))
    if entry is None:
        seen[(name, version)] = [role, time, time]
    else:
        entry[1] = min(entry[1], time)
        entry[2] = max(entry[2], time)


def _request(
    out: Normalised,
    span: dict[str, Any],
    attrs: dict[str, Any],
    models: dict[str, tuple[str, str]],
) -> None:
    start, end = span["start_time_unix_nano"], span["end_time_unix_nano"]
    status = STATUS_NAMES.get(span["status_code"], "unset")
    outcome = attrs.get(wire.REQUEST_OUTCOME)
    out.requests.append(
        {
            "trace_id": span["trace_id"],
            "root_span_id": span["span_id"],
            "name": span["name"],
            "service_name": span["service_name"],
            "start_time_unix_nano": start,
            "end_time_unix_nano": end,
            "duration_ms": max(end - start, 0) / 1e6,
            "status": status,
            "fingerprint": _text(attrs.get(wire.REQUEST_FINGERPRINT)),
            "fingerprint_key_id": _text(attrs.get(wire.REQUEST_FINGERPRINT_KEY_ID)),
            "subject": _text(attrs.get(wire.REQUEST_SUBJECT)),
            "outcome": str(outcome)
            if outcome is not None
            else ("error" if status == "error" else "ok"),
            "models": {role: {"name": n, "version": v} for role, (n, v) in models.items()},
            "features": _features(attrs.get(wire.INPUT_FEATURES)),
        }
    )
    if attrs.get(wire.REVIEW_REQUIRED) is True:
        out.reviews.append(
            {"trace_id": span["trace_id"], "policy_id": _text(attrs.get(wire.REVIEW_POLICY))}
        )
    for key, value in attrs.items():
        if key.startswith(wire.EXPERIMENT_PREFIX) and key.endswith(_NAME_SUFFIX):
            _experiment(out, span, attrs, key, value)
    for role, (name, version) in models.items():
        out.request_models.append(
            {
                "trace_id": span["trace_id"],
                "role": role,
                "model_name": name,
                "model_version": version,
                "start_time_unix_nano": start,
            }
        )


def _shadow_run(
    span: dict[str, Any], attrs: dict[str, Any], models: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    start, end = span["start_time_unix_nano"], span["end_time_unix_nano"]
    status = STATUS_NAMES.get(span["status_code"], "unset")
    outcome = attrs.get(wire.REQUEST_OUTCOME)
    return {
        "trace_id": span["trace_id"],
        "request_trace_id": str(attrs[wire.SHADOW_REQUEST]).lower()[:32],
        "experiment": _text(attrs.get(wire.SHADOW_EXPERIMENT)),
        "arm": _text(attrs.get(wire.SHADOW_ARM)),
        "models": {role: {"name": n, "version": v} for role, (n, v) in models.items()},
        "chosen": None,
        "outcome": str(outcome)[:32] if outcome is not None else None,
        "status": status,
        "duration_ms": max(end - start, 0) / 1e6,
        "start_time_unix_nano": start,
    }


def _shadow_choices(out: Normalised) -> None:
    """A shadow run's `chosen`: its trace's last planner decision, which the SDK sends in the
    same batch as the root. One sent apart is found at read time (app/experiments/shadows.py)."""
    last: dict[str, dict[str, Any]] = {}
    for decision in out.decisions:
        seen = last.get(decision["trace_id"])
        if seen is None or decision["time_unix_nano"] >= seen["time_unix_nano"]:
            last[decision["trace_id"]] = decision
    for run in out.shadow_runs:
        chosen = last.get(run["trace_id"], {}).get("chosen")
        if chosen is not None:
            run["chosen"] = chosen[:256]


_NAME_SUFFIX = ".name"


def _experiment(
    out: Normalised, span: dict[str, Any], attrs: dict[str, Any], key: str, name: Any
) -> None:
    """`warden.experiment.<stage>.name` and `.arm` of a root span: the arm that served it."""
    stage = key[len(wire.EXPERIMENT_PREFIX) : -len(_NAME_SUFFIX)]
    arm = attrs.get(wire.experiment_arm(stage))
    if stage and name and arm:
        out.request_experiments.append(
            {
                "trace_id": span["trace_id"],
                "experiment": str(name)[:128],
                "stage": stage[:32],
                "arm": str(arm)[:128],
                "start_time_unix_nano": span["start_time_unix_nano"],
            }
        )


def _state(span: dict[str, Any], attrs: dict[str, Any], seq: int, time: int) -> dict[str, Any]:
    summary = attrs.get(wire.STATE_SUMMARY)
    if isinstance(summary, list) and len(summary) == 5 and all(type(x) is float for x in summary):
        stats: list[float | None] = summary
    else:
        stats = [None] * 5
        if isinstance(summary, list):
            for i, value in enumerate(summary[:5]):
                stats[i] = _number(value)
    projection = attrs.get(wire.STATE_PROJECTION)
    return {
        "trace_id": span["trace_id"],
        "span_id": span["span_id"],
        "seq": seq,
        "step": _integer(attrs.get(wire.STATE_STEP)),
        "layer": str(attrs.get(wire.STATE_LAYER, "")),
        "mean": stats[0],
        "std": stats[1],
        "min": stats[2],
        "max": stats[3],
        "l2_norm": stats[4],
        "projection": projection if isinstance(projection, list) else [],
        "tensor_sha256": _text(attrs.get(wire.STATE_TENSOR_SHA256)),
        "time_unix_nano": time,
    }


def _decision(span: dict[str, Any], attrs: dict[str, Any]) -> dict[str, Any]:
    candidates = _json_list(attrs.get(wire.PLANNER_CANDIDATES))
    chosen = _text(attrs.get(wire.PLANNER_CHOSEN))
    return {
        "trace_id": span["trace_id"],
        "span_id": span["span_id"],
        "chosen": chosen,
        "confidence": _number(attrs.get(wire.PLANNER_CONFIDENCE)),
        "candidates": candidates,
        "constraints": _json_list(attrs.get(wire.PLANNER_CONSTRAINTS)),
        "rationale": _text(attrs.get(wire.PLANNER_RATIONALE)),
        "time_unix_nano": span["end_time_unix_nano"],
        **summarise(candidates, chosen),
    }


def _policy(span: dict[str, Any], attrs: dict[str, Any], seq: int, time: int) -> dict[str, Any]:
    return {
        "trace_id": span["trace_id"],
        "span_id": span["span_id"],
        "seq": seq,
        "phase": str(attrs.get(wire.POLICY_PHASE, "")),
        "policy_id": str(attrs.get(wire.POLICY_ID, "")),
        "policy_version": _text(attrs.get(wire.POLICY_VERSION)),
        "policy_hash": _text(attrs.get(wire.POLICY_HASH)),
        "outcome": str(attrs.get(wire.POLICY_OUTCOME, "")),
        "message": _text(attrs.get(wire.POLICY_MESSAGE)),
        "time_unix_nano": time,
    }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31:
        return value
    return 0


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _features(value: Any) -> dict[str, Any] | None:
    """`warden.input.features`: a JSON object of scalars. Anything else in it is left out
    (the attribute itself stays with the span), never a reason to refuse the request."""
    if not isinstance(value, str) or not value:
        return None
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(decoded, dict):
        return None
    kept = {
        str(k): v
        for k, v in decoded.items()
        if isinstance(v, int | float | str | bool) and len(str(k)) <= 128
    }
    return kept or None


def _json_list(value: Any) -> list[Any]:
    """A list attribute sent either as an OTLP array or as JSON text (docs/conventions.md)."""
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value:
        try:
            decoded = orjson.loads(value)
        except orjson.JSONDecodeError:
            return [value]
        return decoded if isinstance(decoded, list) else [decoded]
    return []
