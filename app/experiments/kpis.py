"""Decision KPIs of a set of requests: a model version's, or each arm of an experiment.

A `Selection` names the requests (by model version through `request_models`, or by
experiment arm through `request_experiments`, within a time range); `compute` reads each
table once for the whole selection (requests, policy evaluations, reviews, scores, the LLM
and rollout spans, latent states, shadow runs and the live decisions they shadowed) and
returns, per group (the version, or each arm):

- the KPI values (docs/experiments.md, "KPIs and analysis", defines each one);
- per-request summaries (n, mean, variance) of every per-request KPI, for the statistics;
- the same summaries cumulated over time buckets, for the curves;
- for an experiment's shadow arms, their agreement with the live decisions.

`deployments_per_model` counts promotions and rollbacks from `deployments`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel
from sqlalchemy import Connection, Text, and_, case, cast, func, literal, or_, select

from app.experiments import ood, shadows
from app.experiments.analysis import ArmSummary, summarise, summarise_binary
from app.experiments.settings import ExperimentSettings, price_of
from app.scores.queries import corrects
from app.store.tables import (
    Deployment,
    PolicyEvaluation,
    Request,
    RequestExperiment,
    RequestModel,
    Review,
    Score,
    Span,
    WorldModelState,
)
from collectors import conventions as wire

# KPI names (EXPERIMENTS.md): on screen, as `primary_kpi` and `guardrails`, in results.
PLAN_SUCCESS = "plan_success_rate"
DENY = "deny_rate"
REVIEW = "review_rate"
CORRECTION = "correction_rate"
ESCALATION = "escalation_rate"
LATENCY_P50 = "latency_p50_ms"
LATENCY_P95 = "latency_p95_ms"
COST = "cost_per_inference"
OOD = "ood_rate"
SHADOW_AGREEMENT = "shadow_agreement"
KPIS = (
    PLAN_SUCCESS, DENY, REVIEW, CORRECTION, ESCALATION, LATENCY_P50, LATENCY_P95, COST, OOD,
    SHADOW_AGREEMENT,
)  # fmt: skip
HIGHER_IS_BETTER = frozenset({PLAN_SUCCESS, SHADOW_AGREEMENT})
# The per-request measure behind each KPI, as the statistics compare them.
LATENCY = "latency_ms"
RATES = (PLAN_SUCCESS, DENY, REVIEW, CORRECTION, ESCALATION, OOD)
PER_REQUEST = (*RATES, LATENCY, COST)
UNIT_OF = {**{k: k for k in PER_REQUEST}, LATENCY_P50: LATENCY, LATENCY_P95: LATENCY}

WORLD_MODEL = "world_model"
LLM = "llm"
_USAGE = "gen_ai.usage."
_DISAGREEMENTS_KEPT = 50


@dataclass(frozen=True)
class Selection:
    """Which requests: a model version's (`model_name`, `model_version`, optionally of one
    `role`; without `model_version`, each version of the model as its own group), or an
    `experiment`'s, grouped by arm; start times in `[since, until)` (ns)."""

    model_name: str | None = None
    model_version: str | None = None
    role: str | None = None
    experiment: str | None = None
    since: int | None = None
    until: int | None = None

    def members(self, project_id: int) -> Any:
        """`(trace_id, grp, start)` of the selected requests, as a subquery."""
        query: Any
        if self.experiment is not None:
            table: Any = RequestExperiment
            query = select(
                RequestExperiment.trace_id, RequestExperiment.arm.label("grp"),
                RequestExperiment.start_time_unix_nano.label("start"),
            ).where(RequestExperiment.project_id == project_id,
                    RequestExperiment.experiment == self.experiment)  # fmt: skip
        elif self.model_name is not None:
            # Without `model_version`: every version of the model, each its own group.
            table = RequestModel
            group = (
                RequestModel.model_version
                if self.model_version is None
                else literal(self.model_version)
            )
            query = select(
                RequestModel.trace_id, group.label("grp"),
                RequestModel.start_time_unix_nano.label("start"),
            ).where(RequestModel.project_id == project_id,
                    RequestModel.model_name == self.model_name)  # fmt: skip
            if self.model_version is not None:
                query = query.where(RequestModel.model_version == self.model_version)
            if self.role is not None:
                query = query.where(RequestModel.role == self.role)
        else:
            raise ValueError("select by model_name (and model_version), or by experiment")
        if self.since is not None:
            query = query.where(table.start_time_unix_nano >= self.since)
        if self.until is not None:
            query = query.where(table.start_time_unix_nano < self.until)
        return query.subquery("members")


class UnitSummary(BaseModel):
    """A per-request KPI over a group: how many requests it was measured on, mean, variance."""

    n: int
    mean: float
    variance: float

    def arm(self) -> ArmSummary:
        return ArmSummary(n=self.n, mean=self.mean, variance=self.variance)


class KpiValues(BaseModel):
    """A group's decision KPIs; None where nothing was measured."""

    n: int
    plan_success_rate: float | None = None
    deny_rate: float | None = None
    review_rate: float | None = None
    correction_rate: float | None = None
    escalation_rate: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    cost_per_inference: float | None = None
    ood_rate: float | None = None
    ood_scored: int = 0
    shadow_agreement: float | None = None
    shadow_runs: int = 0


class SeriesPoint(BaseModel):
    """The per-request summaries of all requests that started before `until` (ns)."""

    until: int
    units: dict[str, UnitSummary]


class Disagreement(BaseModel):
    request_id: str
    shadow_trace_id: str
    live_chosen: str | None
    shadow_chosen: str | None


class ShadowAgreement(BaseModel):
    """A shadow arm's decisions against the live ones on the same requests."""

    runs: int
    compared: int
    agreeing: int
    rate: float | None
    summary: UnitSummary
    disagreements: list[Disagreement]


class GroupKpis(BaseModel):
    values: KpiValues
    units: dict[str, UnitSummary]
    series: list[SeriesPoint] = []
    # With a selection's `role`: how many requests each `name/version` of that role served.
    served: dict[str, int] = {}


class KpiReport(BaseModel):
    """KPIs per group: the version (keyed by its version) or each arm (keyed by its name)."""

    groups: dict[str, GroupKpis]
    shadows: dict[str, ShadowAgreement] = {}


@dataclass
class _Facts:
    """What is known of one request, gathered table by table."""

    group: str
    start: int
    latency_ms: float
    outcome: str | None
    models: dict[str, Any]
    denied: bool = False
    reviewed: bool = False
    rejected: bool = False
    corrected: bool = False
    tokens_cost: float = 0.0
    rollout_seconds: float = 0.0
    ood: bool | None = None
    flags: dict[str, float] = field(default_factory=dict)


def compute(
    conn: Connection,
    project_id: int,
    selection: Selection,
    config: ExperimentSettings,
    bucket_seconds: int | None = None,
) -> KpiReport:
    """The KPIs of the selected requests per group; with `bucket_seconds`, their series."""
    members = selection.members(project_id)
    facts = _requests(conn, project_id, members)
    if facts:
        _policies(conn, project_id, members, facts)
        _reviews(conn, project_id, members, facts)
        _corrections(conn, project_id, members, facts)
        _costs(conn, project_id, members, facts, config)
        _ood(conn, project_id, members, facts, config)
    groups = {}
    for group in sorted({f.group for f in facts.values()}):
        rows = sorted((f for f in facts.values() if f.group == group), key=lambda f: f.start)
        groups[group] = _group(rows, config, bucket_seconds)
        if selection.role is not None:
            groups[group].served = _served(rows, selection.role)
    shadows = _shadows(conn, project_id, selection) if selection.experiment is not None else {}
    return KpiReport(groups=groups, shadows=shadows)


def _requests(conn: Connection, project_id: int, members: Any) -> dict[str, _Facts]:
    query = select(
        Request.trace_id, members.c.grp, members.c.start, Request.duration_ms, Request.outcome,
        cast(Request.models, Text),
    ).join(members, and_(Request.project_id == project_id,
                         Request.trace_id == members.c.trace_id))  # fmt: skip
    return {
        trace: _Facts(str(grp), int(start), float(ms), outcome, orjson.loads(models or "{}") or {})
        for trace, grp, start, ms, outcome, models in conn.execute(query)
    }


def _policies(conn: Connection, project_id: int, members: Any, facts: dict[str, _Facts]) -> None:
    query = (
        select(PolicyEvaluation.trace_id, PolicyEvaluation.outcome)
        .join(members, and_(PolicyEvaluation.project_id == project_id,
                            PolicyEvaluation.trace_id == members.c.trace_id))
        .where(PolicyEvaluation.outcome.in_(("deny", "require_review")))
        .distinct()
    )  # fmt: skip
    for trace, outcome in conn.execute(query):
        if trace in facts:
            if outcome == "deny":
                facts[trace].denied = True
            else:
                facts[trace].reviewed = True


def _reviews(conn: Connection, project_id: int, members: Any, facts: dict[str, _Facts]) -> None:
    query = select(Review.trace_id, Review.status).join(
        members, and_(Review.project_id == project_id, Review.trace_id == members.c.trace_id)
    )
    for trace, status in conn.execute(query):
        if trace in facts:
            facts[trace].reviewed = True
            facts[trace].rejected = status == "rejected"


def _corrections(conn: Connection, project_id: int, members: Any, facts: dict[str, _Facts]) -> None:
    """Scores that correct the decision (`app.scores.queries.corrects`); a rejected review
    is counted in `_reviews`."""
    query = (
        select(Score.trace_id)
        .join(members, and_(Score.project_id == project_id, Score.trace_id == members.c.trace_id))
        .where(corrects())
        .distinct()
    )
    for (trace,) in conn.execute(query):
        if trace in facts:
            facts[trace].corrected = True


def _costs(
    conn: Connection,
    project_id: int,
    members: Any,
    facts: dict[str, _Facts],
    config: ExperimentSettings,
) -> None:
    """LLM tokens priced per model, and the world model's rollout time."""
    attributes = cast(Span.attributes, Text)
    query = (
        select(Span.trace_id, Span.name, Span.start_time_unix_nano, Span.end_time_unix_nano,
               case((Span.name == wire.ROLLOUT_SPAN, None), else_=attributes))
        .join(members, and_(Span.project_id == project_id, Span.trace_id == members.c.trace_id))
        .where(or_(Span.name == wire.ROLLOUT_SPAN, attributes.like(f"%{_USAGE}%")))
    )  # fmt: skip
    for trace, name, start, end, text in conn.execute(query):
        found = facts.get(trace)
        if found is None:
            continue
        if name == wire.ROLLOUT_SPAN:
            found.rollout_seconds += max(0, int(end) - int(start)) / 1e9
            continue
        attrs = orjson.loads(text or "{}") or {}
        model = (
            attrs.get(wire.GEN_AI_RESPONSE_MODEL)
            or attrs.get(wire.GEN_AI_REQUEST_MODEL)
            or (found.models.get(LLM) or {}).get("name")
        )
        price = price_of(config, model)
        if price is not None:
            found.tokens_cost += price.cost(
                _number(attrs.get(wire.GEN_AI_USAGE_INPUT_TOKENS)),
                _number(attrs.get(wire.GEN_AI_USAGE_OUTPUT_TOKENS)),
            )


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _ood(
    conn: Connection,
    project_id: int,
    members: Any,
    facts: dict[str, _Facts],
    config: ExperimentSettings,
) -> None:
    """Each request's last state judged against its world-model version's reference."""
    query = select(*ood.state_columns()).join(
        members,
        and_(WorldModelState.project_id == project_id,
             WorldModelState.trace_id == members.c.trace_id),
    )  # fmt: skip
    states = ood.last_states(conn.execute(query))
    references: dict[tuple[str, str], ood.Reference | None] = {}
    for trace, state in states.items():
        found = facts.get(trace)
        model = (found.models.get(WORLD_MODEL) or {}) if found else {}
        if found is None or not model.get("name") or model.get("version") is None:
            continue
        key = (str(model["name"]), str(model["version"]))
        if key not in references:
            references[key] = ood.reference_for(
                conn, project_id, *key, config.ood_reference_count, config.ood_quantile
            )
        reference = references[key]
        if reference is not None:
            found.ood = reference.outside(state)


def _group(rows: list[_Facts], config: ExperimentSettings, bucket_seconds: int | None) -> GroupKpis:
    success = set(config.success_outcomes)
    escalation = set(config.escalation_outcomes)
    n = len(rows)
    measures: dict[str, np.ndarray] = {
        PLAN_SUCCESS: np.array([r.outcome in success for r in rows], dtype=np.float64),
        DENY: np.array([r.denied or r.outcome == "denied" for r in rows], dtype=np.float64),
        REVIEW: np.array([r.reviewed for r in rows], dtype=np.float64),
        CORRECTION: np.array([r.corrected or r.rejected for r in rows], dtype=np.float64),
        ESCALATION: np.array(
            [r.reviewed or r.outcome in escalation for r in rows], dtype=np.float64
        ),
        OOD: np.array([np.nan if r.ood is None else float(r.ood) for r in rows]),
        LATENCY: np.array([r.latency_ms for r in rows], dtype=np.float64),
        COST: np.array(
            [r.tokens_cost + r.rollout_seconds * config.world_model_cost_per_second for r in rows],
            dtype=np.float64,
        ),
    }
    units = {name: _summary(values, name in RATES) for name, values in measures.items()}
    latency = measures[LATENCY]
    values = KpiValues(
        n=n,
        **{name: units[name].mean if units[name].n else None for name in (*RATES, COST)},
        latency_p50_ms=float(np.percentile(latency, 50)) if n else None,
        latency_p95_ms=float(np.percentile(latency, 95)) if n else None,
        ood_scored=units[OOD].n,
    )
    series = (
        _series(np.array([r.start for r in rows], dtype=np.int64), measures, bucket_seconds)
        if bucket_seconds
        else []
    )
    return GroupKpis(values=values, units=units, series=series)


def _served(rows: list[_Facts], role: str) -> dict[str, int]:
    served: dict[str, int] = {}
    for row in rows:
        model = row.models.get(role) or {}
        if model.get("name") and model.get("version") is not None:
            key = f"{model['name']}/{model['version']}"
            served[key] = served.get(key, 0) + 1
    return served


def _summary(values: np.ndarray, binary: bool) -> UnitSummary:
    measured = values[~np.isnan(values)]
    found = (
        summarise_binary(int(measured.sum()), len(measured))
        if binary
        else summarise(measured.tolist())
    )
    return UnitSummary(n=found.n, mean=found.mean, variance=found.variance)


def _series(
    starts: np.ndarray, measures: dict[str, np.ndarray], bucket_seconds: int
) -> list[SeriesPoint]:
    """Cumulative summaries at the end of each time bucket that holds requests (sorted)."""
    if not len(starts):
        return []
    width = bucket_seconds * 1_000_000_000
    ends = (starts // width + 1) * width
    cut = np.flatnonzero(np.diff(ends)) + 1  # first row of each later bucket
    last_rows = [*(cut - 1).tolist(), len(starts) - 1]
    cumulative = {}
    for name, values in measures.items():
        present = ~np.isnan(values)
        clean = np.where(present, values, 0.0)
        cumulative[name] = (np.cumsum(present), np.cumsum(clean), np.cumsum(clean * clean))
    points = []
    for row in last_rows:
        units = {}
        for name, (count, total, squares) in cumulative.items():
            k = int(count[row])
            mean = float(total[row]) / k if k else 0.0
            variance = max(0.0, (float(squares[row]) - k * mean * mean) / (k - 1)) if k > 1 else 0.0
            units[name] = UnitSummary(n=k, mean=mean, variance=variance)
        points.append(SeriesPoint(until=int(ends[row]), units=units))
    return points


def _shadows(conn: Connection, project_id: int, selection: Selection) -> dict[str, ShadowAgreement]:
    """Per shadow arm of the experiment: its decisions against the live ones, counted by the
    rule of `app.experiments.shadows.agreement_by_arm`."""
    assert selection.experiment is not None
    arms = shadows.agreement_by_arm(
        conn, project_id, selection.experiment, selection.since, selection.until,
        limit=_DISAGREEMENTS_KEPT,
    )  # fmt: skip
    out: dict[str, ShadowAgreement] = {}
    for arm, found in arms.items():
        summary = summarise_binary(found.agree, found.total)
        out[arm] = ShadowAgreement(
            runs=found.runs,
            compared=found.total,
            agreeing=found.agree,
            rate=summary.mean if found.total else None,
            summary=UnitSummary(n=summary.n, mean=summary.mean, variance=summary.variance),
            disagreements=[
                Disagreement(request_id=d.request_trace_id, shadow_trace_id=d.shadow_trace_id,
                             live_chosen=d.live_chosen, shadow_chosen=d.shadow_chosen)
                for d in found.disagreements
            ],
        )  # fmt: skip
    return out


class ModelDeployments(BaseModel):
    """Alias moves of one model: promotions and rollbacks done, and promotions refused."""

    model_name: str
    promotions: int
    rollbacks: int
    refused: int


def deployments_per_model(
    conn: Connection, project_id: int, names: Iterable[str] | None = None
) -> list[ModelDeployments]:
    """Promotions and rollbacks per model (from `deployments`), by model name."""
    allowed_promote = and_(Deployment.action == "promote", Deployment.allowed.is_(True))
    query = (
        select(
            Deployment.model_name,
            func.count().filter(allowed_promote),
            func.count().filter(
                and_(Deployment.action == "rollback", Deployment.allowed.is_(True))
            ),
            func.count().filter(Deployment.allowed.is_(False)),
        )
        .where(Deployment.project_id == project_id)
        .group_by(Deployment.model_name)
        .order_by(Deployment.model_name)
    )
    if names is not None:
        query = query.where(Deployment.model_name.in_(list(names)))
    return [
        ModelDeployments(model_name=name, promotions=p, rollbacks=r, refused=x)
        for name, p, r, x in conn.execute(query)
    ]
