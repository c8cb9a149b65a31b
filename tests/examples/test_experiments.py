"""The booking stack in experiments: the challenger registered beside the champion books
visibly less of the demo's traffic, and the arm-aware assistant answers with the world model
of the arm it is given, on a real MLflow store (and a live service where it records)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import collectors
from collectors.experiments import Assignment, ShadowArm
from examples.booking import demo
from examples.booking.experiments import ExperimentAssistant, WorldModels
from examples.booking.phrasings import generate_requests
from examples.booking.registry import (
    CHALLENGER,
    CHAMPION,
    DEFAULT_MODEL_NAME,
    load_world_model,
    register_challenger,
    register_world_model,
)
from examples.booking.sim import Calendar
from examples.booking.stack import BookingAssistant
from tests.conftest import LiveService
from tests.examples.conftest import Store

CHAMPION_URI = f"models:/{DEFAULT_MODEL_NAME}@{CHAMPION}"
CHALLENGER_URI = f"models:/{DEFAULT_MODEL_NAME}@{CHALLENGER}"
SECRET = "experiments-test-secret"


def booked_rate(store: Store, model_uri: str, n: int, seed: int) -> float:
    """The share of `n` generated requests booked, as the demo answers them: bookings
    committed, on a fresh calendar."""
    loaded = load_world_model(store.uri, model_uri)
    assistant = BookingAssistant(loaded.model, loaded.name, loaded.version)
    kinds = Counter(assistant.handle(r.text).kind for r in generate_requests(n, seed=seed))
    return kinds["booked"] / n


def test_the_challenger_is_another_version_under_its_alias(store: Store) -> None:
    client = MlflowClient(tracking_uri=store.uri, registry_uri=store.uri)
    assert str(client.get_model_version_by_alias(DEFAULT_MODEL_NAME, CHAMPION).version) == "1"
    assert str(client.get_model_version_by_alias(DEFAULT_MODEL_NAME, CHALLENGER).version) == "2"
    assert store.challenger.config_hash != store.champion.config_hash
    # Cached like the champion: asking again trains nothing and moves no alias.
    again = register_challenger(store.uri)
    assert again.reused and again.version == "2"
    assert register_world_model(None, store.uri).version == "1"


@pytest.mark.parametrize("seed", [0, 1])
def test_the_challenger_books_visibly_less_of_the_demo_traffic(store: Store, seed: int) -> None:
    champion = booked_rate(store, CHAMPION_URI, 500, seed)
    challenger = booked_rate(store, CHALLENGER_URI, 500, seed)
    # Measured at 30-33% against 18-20% on 1,000 requests (examples/booking/README.md).
    assert champion - challenger >= 0.08, (champion, challenger)


def _arm(name: str, uri: str, shadows: tuple[ShadowArm, ...] = ()) -> Assignment:
    return Assignment("wm-ab", "world_model", name, uri, shadows)


def test_each_request_is_answered_by_its_arms_world_model(store: Store) -> None:
    assistant = ExperimentAssistant(WorldModels(store.uri), CHAMPION_URI, commit_bookings=False)
    plain = {
        uri: BookingAssistant(load_world_model(store.uri, uri).model, "m", "x",
                              commit_bookings=False)
        for uri in (CHAMPION_URI, CHALLENGER_URI)
    }  # fmt: skip
    differ = 0
    for n, generated in enumerate(generate_requests(120, seed=3)):
        uri = CHALLENGER_URI if n % 2 else CHAMPION_URI
        answer = assistant.handle(generated.text, assignment=_arm(f"arm-{n % 2}", uri))
        assert assistant.last_arm == f"arm-{n % 2}"
        expected = plain[uri].handle(generated.text)
        assert answer.kind == expected.kind
        assert answer.decision.to_record() == expected.decision.to_record()
        other = plain[CHAMPION_URI if n % 2 else CHALLENGER_URI].handle(generated.text)
        differ += other.decision.to_record() != expected.decision.to_record()
        # Between requests the champion serves again, as outside any experiment.
        assert assistant.stage_models()["world_model"] == (DEFAULT_MODEL_NAME, "1")
    assert differ > 10  # the two versions do decide differently: the test can tell them apart
    assistant.close()


def test_one_model_per_version_however_it_is_named(store: Store) -> None:
    models = WorldModels(store.uri)
    assert models.get(CHAMPION_URI) is models.get(f"models:/{DEFAULT_MODEL_NAME}/1")
    assert models.get(CHALLENGER_URI).version == "2"
    models.close()


def test_a_shadow_answer_books_nothing_and_leaves_the_live_calendar(store: Store) -> None:
    assistant = ExperimentAssistant(WorldModels(store.uri), CHAMPION_URI)
    arm = ShadowArm("wm-shadow", "challenger", CHALLENGER_URI)
    loaded = load_world_model(store.uri, CHALLENGER_URI)
    booked = 0
    for generated in generate_requests(60, seed=5):
        live_before = assistant.calendar.busy.copy()
        seen = assistant.calendar.copy()
        shadow = assistant.shadow_answer(arm, generated.text, seen)
        booked += shadow.kind == "booked"
        assert np.array_equal(seen.busy, live_before)  # the shadow's copy: nothing booked
        assert np.array_equal(assistant.calendar.busy, live_before)
        reference = BookingAssistant(loaded.model, loaded.name, loaded.version,
                                     calendar=seen.copy(), commit_bookings=False)  # fmt: skip
        assert shadow.decision.to_record() == reference.handle(generated.text).decision.to_record()
        # The live request books into the live calendar.
        assistant.handle(generated.text, assignment=_arm("champion", CHAMPION_URI))
    assert booked > 0
    assert not np.array_equal(assistant.calendar.busy, Calendar.generate(seed=0).busy)
    assistant.close()


def _stored(client: Any) -> list[dict[str, Any]]:
    page = client.get("/v1/requests", params={"limit": 100}).raise_for_status().json()
    assert page["next_cursor"] is None
    return [client.get(f"/v1/requests/{r['request_id']}").raise_for_status().json()
            for r in page["items"]]  # fmt: skip


def test_a_recorded_request_names_its_arms_version(
    store: Store, live: LiveService, tmp_path: Path
) -> None:
    key = live.key("default", "ingest", "read")
    collectors.init(endpoint=live.url, api_key=key, fingerprint_secret=SECRET,
                    spool_dir=tmp_path / "spool", service_name="booking-assistant")  # fmt: skip
    try:
        collectors.model("world_model", DEFAULT_MODEL_NAME, "1")
        assistant = ExperimentAssistant(WorldModels(store.uri), CHAMPION_URI)
        for n, generated in enumerate(generate_requests(30, seed=7)):
            uri, arm = (CHALLENGER_URI, "challenger") if n % 3 else (CHAMPION_URI, "champion")
            assistant.handle(generated.text, subject=f"{arm}-{n}", assignment=_arm(arm, uri))
        assistant.close()
        assert collectors.flush(timeout=60)
    finally:
        collectors.shutdown()
    with live.client(key) as client:
        stored = _stored(client)
    assert len(stored) == 30
    versions = Counter(
        (r["subject"].split("-")[0], r["models"]["world_model"]["version"]) for r in stored
    )
    assert versions == {("champion", "1"): 10, ("challenger", "2"): 20}


def test_outside_any_experiment_the_default_version_answers(store: Store) -> None:
    assistant = ExperimentAssistant(WorldModels(store.uri), CHAMPION_URI, commit_bookings=False)
    loaded = load_world_model(store.uri, CHAMPION_URI)
    plain = BookingAssistant(loaded.model, loaded.name, loaded.version, commit_bookings=False)
    for generated in generate_requests(30, seed=11):
        answer = assistant.handle(generated.text)  # no SDK client: no assignment either
        assert assistant.last_arm is None
        assert answer.decision.to_record() == plain.handle(generated.text).decision.to_record()
    assistant.close()


def test_sampled_shadow_arms_run_after_the_answer(
    store: Store, live: LiveService, tmp_path: Path
) -> None:
    key = live.key("default", "ingest", "read")
    collectors.init(endpoint=live.url, api_key=key, fingerprint_secret=SECRET,
                    spool_dir=tmp_path / "spool", service_name="booking-assistant")  # fmt: skip
    try:
        assistant = ExperimentAssistant(WorldModels(store.uri), CHAMPION_URI)
        shadows = (ShadowArm("wm-shadow", "challenger", CHALLENGER_URI),)
        for generated in generate_requests(20, seed=9):
            before = assistant.calendar.busy.copy()
            answer = assistant.handle(generated.text, assignment=_arm("champion", CHAMPION_URI,
                                                                      shadows))  # fmt: skip
            # What the caller gets is the live answer; only it may book.
            assert answer.kind != "booked" or not np.array_equal(assistant.calendar.busy, before)
        assistant.close()
        assert collectors.flush(timeout=60)
        counts = collectors.stats()["shadows"]
    finally:
        collectors.shutdown()
    assert isinstance(counts, dict) and counts["run"] == 20 and counts["failed"] == 0
    with live.client(key) as client:
        assert len(_stored(client)) == 20  # shadows are no requests of their own


def test_the_demo_runs_an_ab_experiment_through_the_service(
    store: Store, live: LiveService, tmp_path: Path
) -> None:
    key = live.key("default", "admin")
    result = demo.run(live.url, key, store.uri, fingerprint_secret=SECRET,
                      spool_dir=tmp_path / "spool", requests=120, experiment="ab",
                      log=lambda _line: None)  # fmt: skip
    assert result.delivered and result.experiment is not None
    assert set(result.arms) == {"champion", "challenger"}
    assert sum(sum(kinds.values()) for kinds in result.arms.values()) == 120
    with live.client(key) as client:
        shown = client.get(f"/v1/experiments/{result.experiment}").raise_for_status().json()
    assert [arm["model"] for arm in shown["arms"]] == [
        f"models:/{DEFAULT_MODEL_NAME}/1",
        f"models:/{DEFAULT_MODEL_NAME}/2",
    ]


def test_the_demo_experiments_bodies(store: Store) -> None:
    ab = demo.experiment_body("ab", store.champion, store.challenger)
    assert ab["stage"] == "world_model" and ab["primary_kpi"] == "plan_success_rate"
    assert [(a["name"], a["model"]) for a in ab["arms"]] == [
        ("champion", store.champion.model_uri),
        ("challenger", store.challenger.model_uri),
    ]
    aa = demo.experiment_body("aa", store.champion, store.challenger)
    assert {a["model"] for a in aa["arms"]} == {store.champion.model_uri}
    shadow = demo.experiment_body("shadow", store.champion, store.challenger)
    assert [a["model"] for a in shadow["arms"]] == [store.champion.model_uri]
    assert shadow["shadows"] == [
        {"name": "challenger", "model": store.challenger.model_uri, "sample_rate": 1.0}
    ]
    with pytest.raises(ValueError, match="one of ab, aa, shadow"):
        demo.experiment_body("abc", store.champion, store.challenger)
