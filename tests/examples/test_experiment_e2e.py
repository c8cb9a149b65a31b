"""Experiments end to end on the booking stack: a live service (its built-in policies active),
the demo's world models in a real MLflow store, the real SDK sending over HTTP.

- An A/B of the champion (v1) against the worse challenger (v2), run by the demo, finds v2
  `worse` on plan success, read over the API; promoting v2 is then refused by the built-in
  `experiment-evidence` deploy policy, whose message names the experiment.
- An A/A (the champion against itself) is `inconclusive`.
- A shadow experiment (the champion live, the challenger in its shadow on every request)
  stores a shadow decision for every request, and nothing of it reaches the caller: the same
  traffic without the shadow gets the same answers, and every live request is recorded as
  served by the champion.

Each experiment's salt is fixed, so its split of the seeded traffic is the same at every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

import collectors
from app.config import Settings
from examples.booking import demo
from examples.booking.experiments import ExperimentAssistant, WorldModels
from examples.booking.phrasings import generate_requests
from examples.booking.registry import CHAMPION, DEFAULT_MODEL_NAME
from tests.conftest import TEST_SECRET, LiveService
from tests.examples.conftest import Store

SECRET = "experiment-e2e-secret"
# Enough for the sequential test to separate ~30% from ~19% booked with room to spare.
AB_REQUESTS = 400


@pytest.fixture
def settings(tmp_path: Path, store: Store) -> Settings:
    """The service on SQLite, reading the session's MLflow store; no background jobs (the
    tests refresh the results themselves), the built-in policies."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'warden.db'}",
        mlflow_tracking_uri=store.uri,
        secret_key=TEST_SECRET,
        lineage_interval=0,
        drift_tick=0,
        audit_checkpoint_interval=0,
        experiment_results_interval=0,
    )


def _run_demo(live: LiveService, key: str, store: Store, tmp_path: Path, kind: str) -> str:
    result = demo.run(
        live.url, key, store.uri, fingerprint_secret=SECRET, spool_dir=tmp_path / "spool",
        requests=AB_REQUESTS, experiment=kind, salt=f"e2e-{kind}", log=lambda _line: None,
    )  # fmt: skip
    assert result.delivered and result.experiment is not None
    assert sum(sum(kinds.values()) for kinds in result.arms.values()) == AB_REQUESTS
    return result.experiment


def _results(client: Any, name: str) -> dict[str, Any]:
    shown = client.get(f"/v1/experiments/{name}", params={"refresh": "true"})
    results: dict[str, Any] = shown.raise_for_status().json()["results"]
    return results


def test_an_ab_finds_the_challenger_worse_and_its_promotion_is_refused(
    store: Store, live: LiveService, tmp_path: Path
) -> None:
    key = live.key("default", "admin")
    name = _run_demo(live, key, store, tmp_path, "ab")
    with live.client(key) as client:
        results = _results(client, name)
        assert results["control"] == "champion" and results["srm"]["mismatch"] is False
        champion, challenger = results["arms"]["champion"], results["arms"]["challenger"]
        assert champion["n"] + challenger["n"] == AB_REQUESTS
        assert challenger["served"] == {f"{DEFAULT_MODEL_NAME}/2": challenger["n"]}
        assert challenger["verdict"] == "worse", challenger["comparisons"]["plan_success_rate"]
        assert "plan_success_rate" in challenger["worse_on"]
        compared = challenger["comparisons"]["plan_success_rate"]
        assert compared["ci_low"] < compared["difference"] < compared["ci_high"] < 0
        assert (
            champion["kpis"]["plan_success_rate"] > challenger["kpis"]["plan_success_rate"]
        )

        refused = client.post(f"/v1/models/{DEFAULT_MODEL_NAME}/promote", json={"version": "2"})
    assert refused.status_code == 403, refused.text
    detail = refused.json()["detail"]
    assert "experiment-evidence" in detail
    assert f"{DEFAULT_MODEL_NAME} v2 was found worse by experiment {name} on" in detail
    mlflow = MlflowClient(tracking_uri=store.uri, registry_uri=store.uri)
    assert str(mlflow.get_model_version_by_alias(DEFAULT_MODEL_NAME, CHAMPION).version) == "1"


def test_an_aa_is_inconclusive(store: Store, live: LiveService, tmp_path: Path) -> None:
    key = live.key("default", "admin")
    name = _run_demo(live, key, store, tmp_path, "aa")
    with live.client(key) as client:
        results = _results(client, name)
    assert results["srm"]["mismatch"] is False
    again = results["arms"]["champion-again"]
    assert again["n"] > AB_REQUESTS // 3 and again["verdict"] == "inconclusive"
    assert again["comparisons"]["plan_success_rate"]["verdict"] == "inconclusive"
    # Both arms were served by the same version.
    assert set(again["served"]) == set(results["arms"]["champion"]["served"])


SHADOW_REQUESTS = 120


def _answers(
    store: Store, live: LiveService, key: str, spool: Path, shadowing: bool
) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    """Send the same seeded traffic through the arm-aware assistant, as the live caller sees
    it: per request the answer's kind and its decision record; and the SDK's counters."""
    collectors.init(
        endpoint=live.url, api_key=key, fingerprint_secret=SECRET, spool_dir=spool,
        service_name="booking-assistant", project=None, policies="service",
        # Room for every run: this test holds every sampled request to its shadow record.
        shadow_queue=SHADOW_REQUESTS,
    )  # fmt: skip
    answers: list[tuple[str, Any]] = []
    try:
        champion = f"models:/{DEFAULT_MODEL_NAME}/{store.champion.version}"
        assistant = ExperimentAssistant(WorldModels(store.uri), champion)
        # Declared through the registry after the assistant declared it by version: the
        # `approved-model-versions` gate then sees its alias (as demo.run does).
        collectors.model("world_model", champion, tracking_uri=store.uri)
        for n, generated in enumerate(generate_requests(SHADOW_REQUESTS, seed=4)):
            try:
                answer = assistant.handle(generated.text, subject=f"user-{n}")
                answers.append((answer.kind, answer.decision.to_record()))
                assert assistant.last_arm == ("champion" if shadowing else None)
            except collectors.PolicyDenied as denied:  # refused when the request opened
                answers.append(("denied", denied.message))
        assistant.close()
        assert collectors.flush(timeout=120, include_spool=True)
        stats = collectors.stats()
    finally:
        collectors.shutdown()
    return answers, stats


def _request_ids(client: Any) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        params = {"limit": 100} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/requests", params=params).raise_for_status().json()
        ids += [item["request_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


def test_a_shadow_is_stored_for_every_request_and_never_reaches_the_caller(
    store: Store, live: LiveService, tmp_path: Path
) -> None:
    key = live.key("default", "admin")
    body = demo.experiment_body("shadow", store.champion, store.challenger, salt="e2e-shadow")
    name = demo.start_experiment(live.url, key, body)
    shadowed, stats = _answers(store, live, key, tmp_path / "spool-1", shadowing=True)
    kinds = {kind for kind, _ in shadowed}
    assert "denied" not in kinds and {"booked", "clarify"} <= kinds
    assert stats["shadows"] == {"queued": SHADOW_REQUESTS, "run": SHADOW_REQUESTS,
                                "failed": 0, "dropped": 0}  # fmt: skip

    with live.client(key) as client:
        live_ids = _request_ids(client)
        assert len(live_ids) == SHADOW_REQUESTS  # a shadow run is no request of its own
        both = 0
        for request_id in live_ids:
            detail = client.get(f"/v1/requests/{request_id}").raise_for_status().json()
            # What ran live, and was recorded, is the champion.
            assert detail["models"]["world_model"]["version"] == store.champion.version
            (shadow,) = client.get(f"/v1/requests/{request_id}/shadows").json()["items"]
            assert (shadow["experiment"], shadow["arm"]) == (name, "challenger")
            assert shadow["status"] != "error"  # its span's status: unset or ok
            assert shadow["models"]["world_model"]["version"] == store.challenger.version
            # The shadow's own answer, and its decision when it proposed a room (the
            # challenger, seeing conflicts everywhere, often asks to clarify instead).
            assert shadow["outcome"] in {"booked", "counter_proposal", "clarify"}
            assert (shadow["chosen"] is not None) == (shadow["outcome"] != "clarify")
            both += shadow["chosen"] is not None and shadow["live_chosen"] is not None
        assert both > SHADOW_REQUESTS // 4
        # The experiment's results count the shadows' agreement with the live decisions.
        results = _results(client, name)
        agreement = results["shadows"]["challenger"]
        assert agreement["runs"] == SHADOW_REQUESTS and agreement["compared"] >= both
        assert 0 < agreement["agreement"] < 1  # the two versions do decide differently
        assert client.post(f"/v1/experiments/{name}/stop").status_code == 200

    # The same traffic, from the same start, without any experiment: the same answers.
    plain, stats = _answers(store, live, key, tmp_path / "spool-2", shadowing=False)
    assert stats["shadows"]["queued"] == 0
    assert plain == shadowed
