"""One request in detail: what came in, its audit-ledger event, its lineage, the world
model's latent trajectory, the planner's decision, the policies' verdicts, its scores (the
feedback on it), its shadow runs with their agreement, and its spans; and,
loaded after the page, whether a signed head proves its ledger event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine

from app.audit.ledger.inclusion import (
    InclusionStatus,
    RequestEvent,
    find_request_event,
    inclusion_status,
)
from app.dashboard.views.charts import Chart
from app.dashboard.views.trajectory import (
    CandidateTable,
    LayerTrajectory,
    by_layer,
    candidate_table,
)
from app.dashboard.views.waterfall import Waterfall, waterfall
from app.experiments.shadows import ShadowRunOut, shadow_runs_for
from app.registry import lineage
from app.registry.read_models import RequestLineage
from app.scores.queries import list_scores
from app.scores.read_models import ScoreOut
from app.store import queries
from app.store.engine import read_connection
from app.store.read_models import RequestRecord
from app.store.trace_pages import PAGE, TraceLayouts


@dataclass(frozen=True)
class DecisionView:
    """The planner's decision, its candidates as a table."""

    chosen: str | None
    confidence: float | None
    rationale: str | None
    constraints: list[Any]
    table: CandidateTable


@dataclass(frozen=True)
class RequestPage:
    record: RequestRecord
    layers: list[LayerTrajectory]
    charts: dict[str, Chart]  # "stats-i" and "proj-i" of layer i
    decisions: list[DecisionView]
    lineage: RequestLineage
    entry: RequestEvent | None
    scores: list[ScoreOut]  # oldest first
    shadows: list[ShadowRunOut]
    waterfall: Waterfall
    span_page: int  # spans a page of the waterfall shows
    focus: str | None
    levels: str | None


@dataclass(frozen=True)
class ProofFragment:
    entry: RequestEvent | None
    proof: InclusionStatus | None


def layer_charts(layers: list[LayerTrajectory]) -> dict[str, Chart]:
    charts: dict[str, Chart] = {}
    for i, layer in enumerate(layers):
        charts[f"stats-{i}"] = {
            "x": layer.steps, "xLabel": "step", "yLabel": "value",
            "series": [{"label": name, "values": values} for name, values in layer.stats.items()],
        }  # fmt: skip
        charts[f"proj-{i}"] = {
            "x": layer.steps, "xLabel": "step", "yLabel": "projection",
            "series": [{"label": f"dim {d}", "values": values}
                       for d, values in enumerate(layer.projection)],
        }  # fmt: skip
    return charts


def request_page(
    engine: Engine,
    layouts: TraceLayouts,
    tracking_uri: str,
    project_id: int,
    request_id: str,
    spans: int = 0,
    focus: str | None = None,
    levels: str | None = None,
) -> RequestPage:
    """The request's page, its waterfall at page `spans` (of the subtree under `focus`,
    `levels` deep: see `waterfall`)."""
    record = queries.get_request_record(engine, project_id, request_id)
    trace_id = record.trace_id
    layers = by_layer(record.states)
    decisions = [
        DecisionView(d.chosen, d.confidence, d.rationale, d.constraints, candidate_table(d))
        for d in record.decisions
    ]
    with read_connection(engine) as conn:
        shadows = shadow_runs_for(conn, project_id, trace_id).items
    return RequestPage(
        record=record,
        layers=layers,
        charts=layer_charts(layers),
        decisions=decisions,
        lineage=lineage.request_lineage(engine, project_id, trace_id, tracking_uri),
        entry=find_request_event(engine, project_id, trace_id, record.ingested_at),
        scores=list_scores(engine, project_id, trace_id),
        shadows=shadows,
        waterfall=waterfall(engine, layouts, project_id, trace_id, spans, focus, levels),
        span_page=PAGE,
        focus=focus,
        levels=levels,
    )


def proof_fragment(
    engine: Engine, public_key: Ed25519PublicKey, project_id: int, request_id: str
) -> ProofFragment:
    """The inclusion-proof status of the request's ledger event."""
    record = queries.get_request_record(engine, project_id, request_id)
    entry = find_request_event(engine, project_id, record.trace_id, record.ingested_at)
    status = inclusion_status(engine, project_id, entry.seq, public_key) if entry else None
    return ProofFragment(entry, status)
