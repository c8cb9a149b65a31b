"""The dashboard's views on a real store (SQLite and PostgreSQL), without a browser: requests
ingested as the SDK sends them, read back as the typed pages the templates show."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine

from app.audit import heads
from app.audit.ledger import checkpoints
from app.dashboard.views import models, policies, request_detail, requests
from app.errors import BadRequest
from app.registry.read_models import VersionTraffic
from app.store.trace_pages import TraceLayouts
from collectors import conventions as wire
from policies import BUILTIN, PolicySet
from tests import otlp
from tests.app.audit.conftest import ingest, project

WORLD_MODEL = "booking-world-model"
TRACKING_URI = "sqlite:///unused-mlflow.db"  # lineage links only: MLflow is never called


def _traffic(engine: Engine, pid: int) -> list[str]:
    """Three requests: two booked by world model v3, one denied by v4. Their trace ids."""
    ids, now = otlp.Ids(11), time.time_ns() - 60 * 1_000_000_000
    found = []
    for i, (version, outcome) in enumerate([("3", "booked"), ("3", "booked"), ("4", "denied")]):
        spans = otlp.hybrid_trace(
            ids, start=now + i * 1_000_000,
            **{wire.model_version("world_model"): version, wire.REQUEST_OUTCOME: outcome},
        )  # fmt: skip
        ingest(engine, pid, spans)
        found.append(spans[0].trace_id.hex())
    return found


def test_a_request_page_holds_what_its_template_shows(engine: Engine) -> None:
    pid = project(engine, "views")
    trace_id = _traffic(engine, pid)[0]
    page = request_detail.request_page(
        engine, TraceLayouts(), TRACKING_URI, pid, trace_id.upper()
    )
    assert page.record.trace_id == trace_id and page.record.outcome == "booked"
    # The rollout: two layers over eight steps, each statistic and projection dimension a
    # series, ready for its chart.
    assert [layer.layer for layer in page.layers] == ["encoder", "transition"]
    encoder = page.layers[0]
    assert encoder.steps == list(range(8)) and encoder.count == 8
    assert encoder.stats["mean"][2] == pytest.approx(0.2) and len(encoder.projection) == 16
    assert page.charts["stats-0"]["x"] == encoder.steps
    assert [s["label"] for s in page.charts["proj-1"]["series"]][:2] == ["dim 0", "dim 1"]
    # The planner's candidates, the chosen one flagged.
    (decision,) = page.decisions
    assert decision.chosen == "room-a@15:00" and decision.constraints == ["capacity>=6"]
    assert decision.table.predicted == ["conflict"]
    assert [(r.action, r.chosen) for r in decision.table.rows] == [
        ("room-a@15:00", True), ("room-b@15:00", False),
    ]  # fmt: skip
    # Its ledger event, its lineage (versions not resolved in MLflow yet) and its spans.
    assert page.entry is not None and page.entry.payload["trace_id"] == trace_id
    assert {s.role for s in page.lineage.stages} == {"llm", "world_model", "planner"}
    assert page.waterfall.total == 4 and page.waterfall.rows[0].depth == 0
    assert {r.depth for r in page.waterfall.rows[1:]} == {1}
    with pytest.raises(BadRequest):
        request_detail.request_page(
            engine, TraceLayouts(), TRACKING_URI, pid, trace_id, levels="some"
        )

    # The inclusion proof, asked for after the page: none before a head is signed.
    key = heads.generate_key()
    unsigned = request_detail.proof_fragment(engine, key.public_key(), pid, trace_id)
    assert unsigned.entry == page.entry
    assert unsigned.proof is not None and unsigned.proof.status == "unsigned"
    checkpoints.sign_now(engine, key, pid)
    proven = request_detail.proof_fragment(engine, key.public_key(), pid, trace_id).proof
    assert proven is not None and proven.status == "verified" and proven.head is not None


def test_list_models_and_policies_pages_count_the_same_traffic(engine: Engine) -> None:
    pid = project(engine, "pages")
    traces = _traffic(engine, pid)
    gates = PolicySet.load_dir(BUILTIN)

    everything = requests.requests_page(engine, gates, pid, requests.Filters(), None)
    assert len(everything.page.items) == 3 and everything.active == {}
    assert {(v.name, v.version) for v in everything.versions} >= {
        (WORLD_MODEL, "3"), (WORLD_MODEL, "4"),
    }  # fmt: skip
    assert "risk-cap" in everything.policies and everything.window is None
    denied = requests.requests_page(
        engine, gates, pid, requests.Filters(outcome="denied", model=f"{WORLD_MODEL}@4"), None
    )
    assert [r.request_id for r in denied.page.items] == [traces[2]]
    assert denied.active == {"model": f"{WORLD_MODEL}@4", "outcome": "denied"}
    with pytest.raises(BadRequest):
        requests.requests_page(engine, gates, pid, requests.Filters(since="yesterday"), None)

    page = models.models_page(engine, pid)
    assert page.traffic[(WORLD_MODEL, "3")] == VersionTraffic(requests=2, denied=0)
    assert page.traffic[(WORLD_MODEL, "4")] == VersionTraffic(requests=1, denied=1)
    assert page.traffic[(WORLD_MODEL, "4")].deny_rate == 1.0
    assert page.names[0] == WORLD_MODEL  # the world model's name first
    labels = {n.key: n.label for n in page.graph.nodes}
    assert labels[f"traffic:{WORLD_MODEL}@3"] == "2 requests"
    assert page.moves == [] and page.drift[(WORLD_MODEL, "3")] == []

    listed = policies.policies_page(engine, gates, pid, "1h")
    (risk,) = [row for row in listed.rows if row.policy.id == "risk-cap"]
    assert risk.counts == {"allow": 3} and risk.total == 3 and risk.rate == 0.0
    assert listed.set_hash == gates.hash and listed.pending == [] and listed.done == []
    with pytest.raises(BadRequest):
        policies.policies_page(engine, gates, pid, "1y")
