"""The results document typed (`ExperimentResults`): what `analyse` stores validates into it
and serialises back to the same JSON, and an experiment without results reads as none."""

from __future__ import annotations

import orjson
from sqlalchemy import Engine, update

from app.experiments import configs, results
from app.experiments.analysis import INVALID_SRM
from app.experiments.read_models import ExperimentDetail, ExperimentResults, stored_results
from app.store.engine import write_transaction
from app.store.tables import Experiment
from tests.app.experiments import traffic
from tests.app.experiments.test_results import ab_test
from tests.app.experiments.traffic import SECOND, T0, Req

MODEL = traffic.WORLD_MODEL


def _json(value: object) -> object:
    return orjson.loads(orjson.dumps(value))


def test_stored_results_validate_and_serialise_unchanged(engine: Engine) -> None:
    pid = traffic.project(engine)
    ab_test(engine, pid)
    traces = traffic.ingest(engine, pid, [Req(start=T0 + 5 * SECOND, chosen="room-b@16:00")], 9)
    # A shadow arm that disagreed once, so the document has every member.
    with write_transaction(engine) as conn:
        conn.execute(
            update(Experiment).values(
                shadows=[{"name": "v9", "model": f"models:/{MODEL}/9", "sample_rate": 1.0}]
            )
        )
    traffic.shadow(engine, pid, "wm-ab", "v9", traces[0], "room-c@09:00", T0 + 5 * SECOND)
    document = _json(results.refresh(engine, pid, "wm-ab"))
    assert isinstance(document, dict)

    typed = stored_results(document)
    assert typed is not None
    assert typed.model_dump(mode="json") == document  # the same JSON, member for member
    assert typed.control == "control" and typed.srm.mismatch is False
    ((name, challenger),) = typed.treatments()
    assert name == "challenger" and challenger.verdict == "worse"
    assert challenger.comparisons is not None
    assert challenger.comparisons["plan_success_rate"].ci_high is not None
    assert challenger.kpis.plan_success_rate is not None
    assert typed.arms["control"].verdict is None  # the control is compared with nobody
    assert "verdict" not in typed.model_dump(mode="json")["arms"]["control"]
    curve = typed.series["plan_success_rate"]
    assert curve[-1].differences["challenger"].verdict == "worse"
    (disagreement,) = typed.shadows["v9"].disagreements
    assert disagreement.request_id == traces[0] and disagreement.shadow_chosen == "room-c@09:00"

    # Through the API's model: the results member serialises as stored.
    detail = configs.get(engine, pid, "wm-ab").model_copy(update={"results": typed})
    shown = _json(detail.model_dump(mode="json"))
    assert isinstance(shown, dict) and shown["results"] == document
    assert ExperimentDetail.model_validate(shown).results == typed


def test_no_results_yet_reads_as_none(engine: Engine) -> None:
    assert stored_results({}) is None and stored_results(None) is None
    pid = traffic.project(engine)
    traffic.experiment(
        engine, pid, "fresh", [("a", f"models:/{MODEL}/1", 1.0), ("b", f"models:/{MODEL}/2", 1.0)]
    )
    detail = configs.get(engine, pid, "fresh")
    assert ExperimentDetail.model_validate({**detail.model_dump(), "results": {}}).results is None
    biased = ExperimentResults.model_validate(
        {"computed_at": "2026-01-01T00:00:00+00:00", "control": "a", "primary_kpi": "deny_rate",
         "srm": {"mismatch": True}, "arms": {"b": {"n": 3, "verdict": INVALID_SRM}}}
    )  # fmt: skip
    assert biased.arms["b"].verdict == INVALID_SRM and biased.arms["b"].kpis.n == 0
