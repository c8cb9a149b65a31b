"""Traffic of known figures for the KPI and results tests, through the real ingest path, and
the rows of other parts (experiment assignments, shadow runs, scores) written the way their
ingest writes them."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, insert

from app.audit.erasure import Vault
from app.ingest.normalise import span_rows
from app.ingest.store import store_batch
from app.store.engine import write_transaction
from app.store.tables import Experiment, RequestExperiment, Score, ShadowRun
from app.tenancy import projects
from collectors import conventions as wire
from tests import otlp
from tests.conftest import TEST_SECRET

VAULT = Vault(TEST_SECRET.encode())
SECOND = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * SECOND
WORLD_MODEL = "booking-world-model"
LLM_MODEL = "intent-parser"


def project(engine: Engine, name: str = "booking") -> int:
    with contextlib.suppress(Exception):
        projects.create_project(engine, name)
    return projects.project_id(engine, name)


@dataclass
class Req:
    """One request's known figures."""

    start: int
    version: str = "3"
    outcome: str = "booked"
    latency_ms: float = 50.0
    input_tokens: int = 100
    output_tokens: int = 50
    llm_model: str = LLM_MODEL
    rollout_ms: float = 4.0
    vector: Sequence[float] = (0.0, 0.0, 0.0, 0.0)
    review: bool = False
    deny: bool = False
    chosen: str = "room-a@15:00"


def spans(ids: otlp.Ids, req: Req) -> list[Any]:
    trace, root = ids.trace(), ids.span()
    attrs: dict[str, Any] = {
        wire.model_name("llm"): LLM_MODEL,
        wire.model_version("llm"): "1",
        wire.model_name("world_model"): WORLD_MODEL,
        wire.model_version("world_model"): req.version,
        wire.model_name("planner"): "mpc-planner",
        wire.model_version("planner"): "2",
        wire.REQUEST_OUTCOME: req.outcome,
    }
    if req.review:
        attrs[wire.REVIEW_REQUIRED] = True
    # The encoder's states are other vectors of another width: only the last layer counts.
    states = [
        (
            wire.STATE_EVENT,
            {
                wire.STATE_STEP: step,
                wire.STATE_LAYER: layer,
                wire.STATE_SUMMARY: [0.0, 1.0, -1.0, 1.0, 1.0],
                wire.STATE_PROJECTION: (
                    [float(v) for v in req.vector] if layer == "transition" else [9.0] * 6
                ),
            },
        )
        for step in range(2)
        for layer in ("encoder", "transition")
    ]
    policy = {
        wire.POLICY_ID: "risk-cap",
        wire.POLICY_VERSION: "1",
        wire.POLICY_HASH: "f" * 64,
        wire.POLICY_PHASE: "post_decision",
        wire.POLICY_OUTCOME: "deny" if req.deny else "allow",
    }
    start = req.start
    return [
        otlp.span(
            trace, root, wire.REQUEST_SPAN, start=start, duration=int(req.latency_ms * MS),
            attrs=attrs,
        ),
        otlp.span(
            trace, ids.span(), f"chat {req.llm_model}", parent=root, start=start + 1,
            attrs={wire.GEN_AI_SYSTEM: "offline", wire.GEN_AI_REQUEST_MODEL: req.llm_model,
                   wire.GEN_AI_USAGE_INPUT_TOKENS: req.input_tokens,
                   wire.GEN_AI_USAGE_OUTPUT_TOKENS: req.output_tokens},
        ),
        otlp.span(
            trace, ids.span(), wire.ROLLOUT_SPAN, parent=root, start=start + 2,
            duration=int(req.rollout_ms * MS), events=states,
        ),
        otlp.span(
            trace, ids.span(), wire.DECISION_SPAN, parent=root, start=start + 3,
            attrs={wire.PLANNER_CANDIDATES: '[{"action": "room-a@15:00", "score": 0.9}]',
                   wire.PLANNER_CHOSEN: req.chosen, wire.PLANNER_CONFIDENCE: 0.9,
                   wire.PLANNER_CONSTRAINTS: "[]"},
            events=[(wire.POLICY_EVENT, policy)],
        ),
    ]  # fmt: skip


def ingest(engine: Engine, project_id: int, requests: Sequence[Req], seed: int = 5) -> list[str]:
    """Ingest `requests`; returns their request ids (trace ids), in order."""
    ids = otlp.Ids(seed)
    batch: list[Any] = []
    traces = []
    for req in requests:
        made = spans(ids, req)
        traces.append(made[0].trace_id.hex())
        batch += made
    store_batch(engine, VAULT, project_id, span_rows(otlp.request(batch)))
    return traces


def experiment(
    engine: Engine,
    project_id: int,
    name: str,
    arms: Sequence[tuple[str, str, float]],
    primary: str = "plan_success_rate",
    guardrails: Sequence[str] = (),
    shadows: Sequence[tuple[str, str]] = (),
    starts_at_ns: int = T0,
) -> None:
    """An experiment row as the experiments API stores it: arms of (name, model URI, weight)."""
    from datetime import UTC, datetime

    with write_transaction(engine) as conn:
        conn.execute(
            insert(Experiment).values(
                project_id=project_id, name=name, stage="world_model", unit="request",
                salt=name, arms=[{"name": a, "model": m, "weight": w} for a, m, w in arms],
                shadows=[{"name": s, "model": m, "sample_rate": 1.0} for s, m in shadows],
                primary_kpi=primary, guardrails=list(guardrails), status="running",
                starts_at=datetime.fromtimestamp(starts_at_ns / SECOND, UTC),
            )
        )  # fmt: skip


def assign(
    engine: Engine,
    project_id: int,
    name: str,
    arm: str,
    traces: Sequence[str],
    starts: Sequence[int],
) -> None:
    """`request_experiments` rows, as ingest writes them from the root span's attributes."""
    with write_transaction(engine) as conn:
        conn.execute(
            insert(RequestExperiment),
            [
                {"project_id": project_id, "trace_id": t, "experiment": name,
                 "stage": "world_model", "arm": arm, "start_time_unix_nano": s}
                for t, s in zip(traces, starts, strict=True)
            ],
        )  # fmt: skip


def shadow(
    engine: Engine, project_id: int, name: str, arm: str, request: str, chosen: str, start: int
) -> None:
    """A `shadow_runs` row, as ingest writes it from a `warden.shadow` root span."""
    with write_transaction(engine) as conn:
        conn.execute(
            insert(ShadowRun).values(
                project_id=project_id, trace_id=f"{request[:24]}{arm[:8]:0>8}",
                request_trace_id=request, experiment=name, arm=arm,
                models={"world_model": {"name": WORLD_MODEL, "version": "9"}}, chosen=chosen,
                outcome="booked", status="ok", duration_ms=3.0, start_time_unix_nano=start,
            )
        )  # fmt: skip


def score(
    engine: Engine,
    project_id: int,
    request: str,
    name: str,
    value: float | None,
    source: str = "human",
    correction: dict[str, Any] | None = None,
) -> None:
    """A `scores` row, as the scores API stores it."""
    with write_transaction(engine) as conn:
        conn.execute(
            insert(Score).values(
                project_id=project_id, trace_id=request, score_key=f"{request}:{name}",
                name=name, data_type="numeric", value=value, source=source, author="ana",
                correction=correction,
            )
        )  # fmt: skip
