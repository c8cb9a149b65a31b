"""The experiment pages and the KPIs on the models page, overview and request page, as the
typed page objects their templates show, on a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import Engine

from app.dashboard.views import experiment_charts as charts
from app.dashboard.views import experiments, models, overview, request_detail
from app.errors import NotFound
from app.store.trace_pages import TraceLayouts
from tests.app.dashboard import experiment_data
from tests.app.dashboard.experiment_data import CORRECTION, MODEL, SHADOW_CHOICE

TRACKING_URI = "sqlite:///unused-mlflow.db"  # lineage links only: MLflow is never called


def _listed(engine: Engine, project_id: int) -> dict[str, experiments.ListedExperiment]:
    return {i.experiment.name: i for i in experiments.experiments_page(engine, project_id).items}


def test_the_experiments_list_and_an_ab_page(engine: Engine) -> None:
    lab = experiment_data.build(engine)
    listed = _listed(engine, lab.project_id)
    assert set(listed) == {"wm-ab", "wm-srm", "wm-shadow"}
    assert listed["wm-ab"].verdicts == {"challenger": "worse"} and not listed["wm-ab"].srm
    assert listed["wm-srm"].computed_at is None  # not analysed until someone looks

    page = experiments.experiment_page(engine, lab.project_id, "wm-ab")
    assert page.results is not None and not page.refreshed  # stored a moment ago: fresh
    control, challenger = page.arms
    assert control.control and control.requests == 80 and control.share == 0.5
    assert challenger.verdict == "worse" and challenger.css == "worse"
    assert challenger.breached == ["latency_p95_ms"]
    assert challenger.served == {f"{MODEL}/2": 80}
    rows = {r.kpi: r for r in page.rows}
    assert rows["plan_success_rate"].primary and rows["latency_p95_ms"].guardrail
    base, treated = rows["plan_success_rate"].cells
    assert (base.value, base.verdict) == ("90.0%", None)
    assert treated.value == "20.0%" and treated.difference == "\u221270.0 pp"
    assert treated.verdict == "worse" and treated.interval.startswith("[\u2212")
    # No request denied on either side: no variation, so no interval to show.
    assert rows["deny_rate"].cells[1].interval == "(no interval: too few requests or no variation)"
    # The curves: the primary KPI's and the latency guardrail's, each a mean chart and a
    # difference chart whose interval band is drawn.
    keys = [c.key for c in page.charts]
    assert keys == [
        "plan_success_rate-mean", "plan_success_rate-difference",
        "latency_ms-mean", "latency_ms-difference", "deny_rate-mean", "deny_rate-difference",
    ]  # fmt: skip
    difference = page.charts[1]
    assert difference.zero is not None and difference.bands[0].path.endswith("Z")
    assert len(difference.lines[0].path.split("L")) >= 4  # a point per hour of traffic
    # The first hours' wide intervals are cut at the plot's edge, not drawn off the chart,
    # and the axis is framed by the later ones: a rate's difference within ±100 pp.
    ys = [float(p.split(",")[1]) for p in re.findall(r"[\d.]+,[\d.]+", difference.bands[0].path)]
    assert min(ys) >= 0 and max(ys) <= charts.HEIGHT
    assert all(-1.2 <= float(t.label.split()[0]) / 100 <= 1.2 for t in difference.y_ticks)
    assert [line.label for line in page.charts[0].lines] == ["control", "challenger"]

    with pytest.raises(NotFound):
        experiments.experiment_page(engine, lab.project_id, "nope")


def test_srm_and_shadow_pages_compute_their_results_on_view(engine: Engine) -> None:
    lab = experiment_data.build(engine)
    srm = experiments.experiment_page(engine, lab.project_id, "wm-srm")
    assert srm.refreshed and srm.results is not None and srm.results.srm.mismatch
    assert srm.results.srm.counts == {"a": 100, "b": 20}
    assert srm.results.srm.expected == {"a": 60.0, "b": 60.0}
    assert srm.arms[1].verdict == "invalid: SRM" and srm.arms[1].css == "srm"
    # Stored now, and final: the next view reads them.
    assert not experiments.experiment_page(engine, lab.project_id, "wm-srm").refreshed
    listed = _listed(engine, lab.project_id)
    assert listed["wm-srm"].srm

    shadow = experiments.experiment_page(engine, lab.project_id, "wm-shadow")
    assert shadow.results is not None
    found = shadow.results.shadows["v9"]
    assert (found.runs, found.compared) == (40, 40)
    assert found.agreement == pytest.approx(35 / 40)
    assert sorted(d.request_id for d in found.disagreements) == sorted(lab.disagreeing)
    assert {d.shadow_chosen for d in found.disagreements} == {SHADOW_CHOICE}


def test_kpis_per_version_on_models_and_overview(engine: Engine) -> None:
    lab = experiment_data.build(engine)
    page = models.models_page(engine, lab.project_id)
    v1, v2 = page.kpis.values[(MODEL, "1")], page.kpis.values[(MODEL, "2")]
    assert (v1.n, v2.n) == (80, 80)
    assert v1.plan_success_rate == pytest.approx(0.9)
    assert v2.plan_success_rate == pytest.approx(0.2)
    assert v2.correction_rate == pytest.approx(1 / 80)  # the one corrected request
    assert v1.latency_p95_ms is not None and v2.latency_p95_ms is not None
    assert v2.latency_p95_ms > v1.latency_p95_ms
    assert v1.ood_scored > 0  # the version's first requests are its own reference
    moves = page.kpis.deployments[MODEL]
    assert (moves.promotions, moves.rollbacks, moves.refused) == (2, 1, 1)

    front = overview.overview_page(engine, lab.project_id, "24h")
    assert front.kpis.values[(MODEL, "2")].plan_success_rate == pytest.approx(0.2)
    assert {(n, v) for n, v in front.kpis.values} == {(MODEL, "1"), (MODEL, "2")}
    running = {i.experiment.name: i.verdicts for i in front.experiments}
    assert running == {"wm-ab": {"challenger": "worse"}, "wm-shadow": {}}


def test_a_request_page_lists_its_scores_and_shadow_runs(engine: Engine) -> None:
    lab = experiment_data.build(engine)
    scored = request_detail.request_page(engine, TraceLayouts(), TRACKING_URI, lab.project_id,
                                         lab.scored)  # fmt: skip
    assert [(s.name, s.source) for s in scored.scores] == [("correction", "human"),
                                                            ("helpful", "user")]  # fmt: skip
    assert scored.scores[0].correction == CORRECTION and scored.scores[1].value == 2.0
    assert scored.shadows == []

    shadowed = request_detail.request_page(
        engine, TraceLayouts(), TRACKING_URI, lab.project_id, lab.disagreeing[0]
    )
    (run,) = shadowed.shadows
    assert run.experiment == "wm-shadow" and run.arm == "v9"
    assert (run.chosen, run.live_chosen, run.agrees) == (SHADOW_CHOICE, "room-a@15:00", False)
