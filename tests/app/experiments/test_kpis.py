"""Decision KPIs computed from traffic ingested through the real path, checked by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, insert

from app.experiments import kpis
from app.experiments import settings as experiment_settings
from app.experiments.kpis import Selection
from app.experiments.settings import ExperimentSettings
from app.governance import reviews
from app.store.engine import read_connection, write_transaction
from app.store.tables import Deployment
from tests.app.cli.warden_process import warden
from tests.app.experiments import traffic
from tests.app.experiments.traffic import SECOND, T0, Req

PRICED = {
    "prices": {traffic.LLM_MODEL: {"input_per_1k_tokens": 1.0, "output_per_1k_tokens": 2.0}},
    "world_model_cost_per_second": 0.5,
}


def _compute(
    engine: Engine, pid: int, selection: Selection, bucket: int | None = None
) -> kpis.KpiReport:
    config = experiment_settings.load(engine, pid)
    with read_connection(engine) as conn:
        return kpis.compute(conn, pid, selection, config, bucket)


def test_a_versions_kpis_from_outcomes_policies_reviews_scores_spans(engine: Engine) -> None:
    pid = traffic.project(engine)
    experiment_settings.update_settings(engine, pid, PRICED)
    outcomes = ["booked"] * 6 + ["handed_over", "handed_over", "denied", "clarify"]
    reqs = [
        Req(start=T0 + i * SECOND, outcome=outcomes[i], latency_ms=10.0 * (i + 1),
            review=i in (2, 6), deny=i == 9, llm_model="other-llm" if i == 9 else traffic.LLM_MODEL)
        for i in range(10)
    ]  # fmt: skip
    # Another version's requests at the same time stay out of version 3's figures.
    others = [Req(start=T0 + i * SECOND + 5, version="4", outcome="denied") for i in range(3)]
    traces = traffic.ingest(engine, pid, reqs + others)
    (rejected,) = [r for r in reviews.list_reviews(engine, pid) if r.request_id == traces[2]]
    reviews.decide(engine, pid, rejected.id, approve=False, actor="ana")
    traffic.score(engine, pid, traces[3], "preferred", 1.0, correction={"action": "room-b"})
    traffic.score(engine, pid, traces[4], "correction", 0.0)  # a person said: no correction
    traffic.score(engine, pid, traces[5], "correction", 1.0, source="automatic")
    traffic.score(engine, pid, traces[1], "correction", 1.0, source="review")

    report = _compute(
        engine,
        pid,
        Selection(model_name=traffic.WORLD_MODEL, model_version="3", role="world_model"),
    )
    (group,) = report.groups.values()
    values = group.values
    assert values.n == 10
    assert values.plan_success_rate == pytest.approx(0.6)
    assert values.deny_rate == pytest.approx(0.2)  # outcome `denied`, and a deny evaluation
    assert values.review_rate == pytest.approx(0.2)
    assert values.correction_rate == pytest.approx(0.3)  # rejected review, correction, review
    assert values.escalation_rate == pytest.approx(0.3)  # two reviews, two handed over, one both
    assert values.latency_p50_ms == pytest.approx(55.0)
    assert values.latency_p95_ms == pytest.approx(95.5)
    # 100 tokens in, 50 out at 1 and 2 per 1k, plus 4 ms of rollout at 0.5 per second; the
    # request through an unpriced model costs its rollout only.
    assert values.cost_per_inference == pytest.approx((9 * 0.202 + 0.002) / 10)
    assert group.units["latency_ms"].n == 10
    assert group.units["latency_ms"].mean == pytest.approx(55.0)
    assert group.units["latency_ms"].variance == pytest.approx(
        np.var(np.arange(10, 101, 10), ddof=1)
    )
    assert group.units["plan_success_rate"].mean == pytest.approx(0.6)
    assert group.served == {f"{traffic.WORLD_MODEL}/3": 10}

    four = _compute(engine, pid, Selection(model_name=traffic.WORLD_MODEL, model_version="4"))
    assert four.groups["4"].values.n == 3 and four.groups["4"].values.deny_rate == 1.0
    # A time range cuts the selection.
    early = _compute(
        engine, pid,
        Selection(model_name=traffic.WORLD_MODEL, model_version="3", until=T0 + 5 * SECOND),
    )  # fmt: skip
    assert early.groups["3"].values.n == 5 and early.groups["3"].values.plan_success_rate == 1.0


def test_out_of_distribution_against_the_versions_first_requests(engine: Engine) -> None:
    pid = traffic.project(engine)
    experiment_settings.update_settings(engine, pid, {"ood_reference_count": 30})
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(30, 4))
    centre = reference.mean(axis=0)
    far = centre + 40.0
    reqs = [Req(start=T0 + i * SECOND, vector=tuple(reference[i])) for i in range(30)]
    later = [
        Req(start=T0 + (100 + i) * SECOND, vector=tuple(far if i in (3, 7) else centre))
        for i in range(10)
    ]
    traffic.ingest(engine, pid, reqs + later)
    report = _compute(
        engine, pid,
        Selection(model_name=traffic.WORLD_MODEL, model_version="3", since=T0 + 100 * SECOND),
    )  # fmt: skip
    values = report.groups["3"].values
    assert values.ood_scored == 10
    assert values.ood_rate == pytest.approx(0.2)
    # Over all its traffic, the reference's own farthest point is beyond its 0.99 quantile.
    whole = _compute(engine, pid, Selection(model_name=traffic.WORLD_MODEL, model_version="3"))
    assert whole.groups["3"].values.ood_rate == pytest.approx(3 / 40)


def test_per_arm_kpis_series_and_shadow_agreement(engine: Engine) -> None:
    pid = traffic.project(engine)
    hour = 3600 * SECOND
    # Control (v3): 4 requests in the first hour, 2 in the second, all booked.
    # Treatment (v4): 3 in the first hour (1 booked), 3 in the second (all booked).
    control = [Req(start=T0 + i * SECOND) for i in range(4)] + [
        Req(start=T0 + hour + i * SECOND) for i in range(2)
    ]
    treatment = [
        Req(start=T0 + 10 * SECOND + i * SECOND, version="4",
            outcome="booked" if i == 0 else "clarify")
        for i in range(3)
    ] + [Req(start=T0 + hour + (10 + i) * SECOND, version="4") for i in range(3)]  # fmt: skip
    c_traces = traffic.ingest(engine, pid, control, seed=1)
    t_traces = traffic.ingest(engine, pid, treatment, seed=2)
    arms = [("control", "models:/m/3", 0.5), ("v4", "models:/m/4", 0.5)]
    traffic.experiment(engine, pid, "wm-ab", arms, shadows=[("v5-shadow", "models:/m/5")])
    traffic.assign(engine, pid, "wm-ab", "control", c_traces, [r.start for r in control])
    traffic.assign(engine, pid, "wm-ab", "v4", t_traces, [r.start for r in treatment])
    # The shadow agrees with the live decision on 3 of 4 requests it saw.
    for i, trace in enumerate(c_traces[:4]):
        chosen = "room-z@09:00" if i == 1 else "room-a@15:00"
        traffic.shadow(engine, pid, "wm-ab", "v5-shadow", trace, chosen, control[i].start + 1)

    report = _compute(engine, pid, Selection(experiment="wm-ab", role="world_model"), 3600)
    assert set(report.groups) == {"control", "v4"}
    assert report.groups["control"].values.n == 6
    assert report.groups["control"].values.plan_success_rate == 1.0
    assert report.groups["v4"].values.plan_success_rate == pytest.approx(4 / 6)
    assert report.groups["v4"].served == {f"{traffic.WORLD_MODEL}/4": 6}

    series = report.groups["v4"].series
    assert [p.until for p in series] == [(T0 // hour + 1) * hour, (T0 // hour + 2) * hour]
    assert [p.units["plan_success_rate"].n for p in series] == [3, 6]
    assert series[0].units["plan_success_rate"].mean == pytest.approx(1 / 3)
    assert series[1].units["plan_success_rate"].mean == pytest.approx(4 / 6)
    assert series[1].units["plan_success_rate"].variance == pytest.approx(
        np.var([1, 0, 0, 1, 1, 1], ddof=1)
    )
    assert [p.units["plan_success_rate"].n for p in report.groups["control"].series] == [4, 6]

    (agreement,) = report.shadows.values()
    assert agreement.runs == 4 and agreement.compared == 4 and agreement.agreeing == 3
    assert agreement.rate == pytest.approx(0.75)
    (odd,) = agreement.disagreements
    assert odd.request_id == c_traces[1] and odd.shadow_chosen == "room-z@09:00"
    assert odd.live_chosen == "room-a@15:00"


def test_promotions_and_rollbacks_per_model(engine: Engine) -> None:
    pid = traffic.project(engine)
    rows = [
        ("wm", "promote", True), ("wm", "promote", True), ("wm", "promote", False),
        ("wm", "rollback", True), ("planner", "promote", True),
    ]  # fmt: skip
    with write_transaction(engine) as conn:
        conn.execute(
            insert(Deployment),
            [
                {"project_id": pid, "model_name": m, "alias": "champion", "action": a,
                 "from_version": "1", "to_version": "2", "allowed": ok, "verdicts": [],
                 "actor": "t", "created_at": datetime.now(UTC)}
                for m, a, ok in rows
            ],
        )  # fmt: skip
    with read_connection(engine) as conn:
        found = kpis.deployments_per_model(conn, pid)
    assert [(d.model_name, d.promotions, d.rollbacks, d.refused) for d in found] == [
        ("planner", 1, 0, 0),
        ("wm", 2, 1, 1),
    ]


def test_settings_refuse_what_they_cannot_hold(engine: Engine) -> None:
    from app.errors import BadRequest

    pid = traffic.project(engine)
    assert experiment_settings.load(engine, pid) == ExperimentSettings()
    with pytest.raises(BadRequest, match="ood_quantile"):
        experiment_settings.update_settings(engine, pid, {"ood_quantile": 1.5})
    changed = experiment_settings.update_settings(engine, pid, {"require_experiment": True})
    assert changed.require_experiment and changed.success_outcomes == ["booked"]
    assert experiment_settings.load(engine, pid).require_experiment


def test_cli_configure_merges_prices_and_refuses_bad_values(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'warden.db'}"
    assert warden(tmp_path, url, "project", "create", "booking").returncode == 0
    done = warden(tmp_path, url, "experiment", "configure", "--project", "booking",
                  "--success-outcome", "booked", "--success-outcome", "rebooked",
                  "--price", "intent-parser=0.5,1.5", "--require-experiment")  # fmt: skip
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)
    assert first["success_outcomes"] == ["booked", "rebooked"] and first["require_experiment"]
    more = warden(tmp_path, url, "experiment", "configure", "--project", "booking",
                  "--price", "summariser=1,2")  # fmt: skip
    prices = json.loads(more.stdout)["prices"]
    assert prices == {
        "intent-parser": {"input_per_1k_tokens": 0.5, "output_per_1k_tokens": 1.5},
        "summariser": {"input_per_1k_tokens": 1.0, "output_per_1k_tokens": 2.0},
    }
    refused = warden(tmp_path, url, "experiment", "configure", "--project", "booking",
                     "--ood-quantile", "2")  # fmt: skip
    assert refused.returncode == 1 and "ood_quantile" in refused.stderr
    bad_price = warden(
        tmp_path, url, "experiment", "configure", "--price", "x=1", "--project", "booking"
    )
    assert bad_price.returncode == 2 and "MODEL=INPUT,OUTPUT" in bad_price.stderr
