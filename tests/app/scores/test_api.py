"""The score API over HTTP on a live service: configs, recording, reads, scopes, the ledger,
and what the corrections and escalations reads make of scores and of the review queue."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from app.scores.queries import correction_trace_ids, escalation_trace_ids
from app.store.tables import Project, Score
from collectors import conventions as wire
from tests import otlp
from tests.app.scores.scoring import config_events, requests, score_events, send
from tests.conftest import LiveService


def _scores_stored(live: LiveService) -> int:
    with live.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Score)).scalar_one())


def test_configs_are_put_listed_and_deleted_by_admins(live: LiveService) -> None:
    admin = live.client(live.key("shop", "admin"))
    reader = live.client(live.key("shop", "read"))
    rating = {"data_type": "numeric", "min_value": 1, "max_value": 5, "description": "1-5"}
    answer = admin.put("/v1/score-configs/rating", json=rating)
    assert answer.status_code == 200, answer.text
    assert answer.json()["max_value"] == 5 and answer.json()["categories"] == []
    label = {"data_type": "categorical", "categories": ["good", "bad"]}
    assert admin.put("/v1/score-configs/label", json=label).status_code == 200
    # Replacing keeps one config of the name.
    assert admin.put("/v1/score-configs/rating", json=rating | {"max_value": 10}).status_code == 200
    listed = reader.get("/v1/score-configs").json()["items"]
    assert [(c["name"], c["max_value"]) for c in listed] == [("label", None), ("rating", 10)]
    assert reader.put("/v1/score-configs/x", json=rating).status_code == 403

    bad = admin.put("/v1/score-configs/rating", json=rating | {"min_value": 7, "max_value": 2})
    assert bad.status_code == 422
    assert bad.json()["detail"] == "min_value: 7 is above max_value 2"
    bad = admin.put("/v1/score-configs/label", json={"data_type": "categorical"})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("categories:")

    # A name is refused alike by the service and by a client that validates with the
    # document's pattern (ECMA 262): U+0085 is whitespace to Python and Rust, not to ECMA's
    # `\s`; U+2028 ends a line to ECMA's `.`, not to theirs.
    pattern = admin.get("/openapi.json").json()["paths"]["/v1/score-configs/{name}"]["put"][
        "parameters"
    ][0]["schema"]["pattern"]
    assert "\\s" not in pattern and "." not in pattern.replace("\\.", "")
    for name in ("%C2%85rating", "rating%C2%85", "a%E2%80%A8b", "%1Crating", "%20rating"):
        refused = admin.put(f"/v1/score-configs/{name}", json=rating)
        assert refused.status_code == 400, (name, refused.text)
        assert "path.name" in refused.json()["detail"]
    assert admin.put("/v1/score-configs/star%20rating", json=label).status_code == 200
    assert admin.delete("/v1/score-configs/star%20rating").status_code == 200

    deleted = admin.delete("/v1/score-configs/label")
    assert deleted.status_code == 200 and deleted.json()["categories"] == ["good", "bad"]
    assert admin.delete("/v1/score-configs/label").status_code == 404
    # Another project sees none of them.
    other = live.client(live.key("other", "admin"))
    assert other.get("/v1/score-configs").json()["items"] == []
    assert other.delete("/v1/score-configs/rating").status_code == 404
    # Every change is in the ledger, with who made it; refused ones are not.
    changes = [
        (kind, payload["name"], payload.get("max_value"), payload["actor"].startswith("key:"))
        for kind, payload in config_events(live.engine, "shop")
    ]
    assert changes == [
        ("score_config.set", "rating", 5, True),
        ("score_config.set", "label", None, True),
        ("score_config.set", "rating", 10, True),
        ("score_config.set", "star rating", None, True),
        ("score_config.deleted", "star rating", None, True),
        ("score_config.deleted", "label", None, True),
    ]


def test_a_score_is_checked_against_its_config_stored_and_in_the_ledger(
    live: LiveService,
) -> None:
    sender = live.client(live.key("shop", "ingest"))
    admin = live.client(live.key("shop", "admin"))
    reader = live.client(live.key("shop", "read"))
    [request_id] = requests(sender, otlp.Ids(11), 1)
    admin.put(
        "/v1/score-configs/rating", json={"data_type": "numeric", "min_value": 1, "max_value": 5}
    ).raise_for_status()
    url = f"/v1/requests/{request_id}/scores"

    refused = sender.post(url, json={"name": "rating", "value": 7})
    assert refused.status_code == 422
    assert refused.json()["detail"] == "value: 7 is above the maximum 5 of score config 'rating'"
    refused = sender.post(url, json={"name": "rating", "value": 4, "source": "bot"})
    assert refused.status_code == 422 and refused.json()["detail"].startswith("source:")
    assert _scores_stored(live) == 0 and score_events(live.engine, "shop") == []

    body = {
        "name": "rating", "value": 4, "source": "human", "author": "ops-7",
        "comment": "fine", "correction": {"action": "room-b@15:00"},
    }  # fmt: skip
    stored = sender.post(url, json=body)
    assert stored.status_code == 201, stored.text
    score = stored.json()
    assert score["request_id"] == request_id and score["key"].startswith("api:")
    assert (score["value"], score["data_type"], score["source"]) == (4, "numeric", "human")
    assert score["correction"] == {"action": "room-b@15:00"}
    # Without a config, the value's type decides.
    flag = sender.post(url, json={"name": "plan_success", "value": False, "source": "automatic"})
    assert flag.status_code == 201 and flag.json()["data_type"] == "boolean"
    assert flag.json()["value"] is False

    listed = reader.get(url).json()["items"]
    assert [s["name"] for s in listed] == ["rating", "plan_success"]
    assert listed[0] == score
    events = score_events(live.engine, "shop")
    assert [(e["score_key"], e["trace_id"], e["value"]) for e in events] == [
        (score["key"], request_id, 4.0), (flag.json()["key"], request_id, False),
    ]  # fmt: skip
    assert events[0]["correction_sha256"] is not None and events[1]["correction_sha256"] is None
    assert reader.post(url, json={"name": "rating", "value": 3}).status_code == 403


def test_a_request_of_another_project_or_none_is_not_found(live: LiveService) -> None:
    shop = live.client(live.key("shop", "ingest"))
    [request_id] = requests(shop, otlp.Ids(12), 1)
    other = live.client(live.key("other", "admin"))
    url = f"/v1/requests/{request_id}/scores"
    assert other.post(url, json={"name": "rating", "value": 3}).status_code == 404
    assert other.get(url).status_code == 404
    assert shop.post("/v1/requests/" + "0" * 32 + "/scores", json={"name": "r", "value": 1})\
        .status_code == 404  # fmt: skip
    assert _scores_stored(live) == 0


def test_corrections_and_escalations_from_scores_outcomes_and_the_review_queue(
    live: LiveService,
) -> None:
    sender = live.client(live.key("shop", "ingest"))
    admin = live.client(live.key("shop", "admin"))
    ids = otlp.Ids(13)
    plain, corrected, said_no, said_yes, user_said = requests(sender, ids, 5)
    [handed_over] = requests(sender, ids, 1, **{wire.REQUEST_OUTCOME: "handed_over"})
    rejected, approved = requests(
        sender, ids, 2, **{wire.REVIEW_REQUIRED: True, wire.REVIEW_POLICY: "risk"}
    )

    def post(request_id: str, body: dict[str, object]) -> None:
        sender.post(f"/v1/requests/{request_id}/scores", json=body).raise_for_status()

    post(plain, {"name": "rating", "value": 5})
    post(corrected, {"name": "rating", "value": 2, "correction": {"action": "room-c"}})
    post(said_no, {"name": "correction", "value": False, "source": "human"})
    post(said_yes, {"name": "correction", "value": True, "source": "human"})
    post(user_said, {"name": "correction", "value": True, "source": "user"})
    reviews = {r["request_id"]: r["id"] for r in admin.get("/v1/reviews").json()["items"]}
    admin.post(f"/v1/reviews/{reviews[rejected]}/reject", json={}).raise_for_status()
    admin.post(f"/v1/reviews/{reviews[approved]}/approve", json={}).raise_for_status()

    everything = [plain, corrected, said_no, said_yes, user_said, handed_over, rejected, approved]
    with live.engine.connect() as conn:
        shop = conn.execute(select(Project.id).where(Project.name == "shop")).scalar_one()
        other = conn.execute(select(Project.id).where(Project.name == "other")).scalar_one_or_none()
        assert correction_trace_ids(conn, shop, everything) == {corrected, said_yes, rejected}
        assert correction_trace_ids(conn, shop, [plain, said_no]) == set()
        assert escalation_trace_ids(conn, shop, everything, ["handed_over"]) == {
            handed_over, rejected, approved,
        }  # fmt: skip
        assert escalation_trace_ids(conn, shop, everything, []) == {rejected, approved}
        assert correction_trace_ids(conn, (other or -1), everything) == set()


def test_a_correction_posted_through_the_api_moves_the_arms_correction_rate(
    live: LiveService,
) -> None:
    """What a reviewer does after the fact reaches the experiment's KPIs: the corrected
    request's arm gets the correction, the other arm none; a refused score changes nothing."""
    sender = live.client(live.key("shop", "ingest"))
    admin = live.client(live.key("shop", "admin"))
    experiment = {
        "name": "wm-corrections", "stage": "world_model", "unit": "request",
        "arms": [{"name": "control", "model": "models:/booking-world-model/1"},
                 {"name": "b", "model": "models:/booking-world-model/2"}],
    }  # fmt: skip
    admin.post("/v1/experiments", json=experiment).raise_for_status()
    ids, now = otlp.Ids(23), time.time_ns()  # the experiment counts what came after it began
    arms: dict[str, list[str]] = {}
    for arm in ("control", "b"):
        attrs = {
            wire.experiment_name("world_model"): "wm-corrections",
            wire.experiment_arm("world_model"): arm,
        }
        traces = [otlp.hybrid_trace(ids, start=now + i, **attrs) for i in range(2)]
        send(sender, [s for trace in traces for s in trace])
        arms[arm] = [trace[0].trace_id.hex() for trace in traces]

    def correction_rates() -> dict[str, float]:
        found = admin.get("/v1/experiments/wm-corrections", params={"refresh": "true"})
        found.raise_for_status()
        return {
            arm: entry["kpis"]["correction_rate"]
            for arm, entry in found.json()["results"]["arms"].items()
        }

    assert correction_rates() == {"control": 0.0, "b": 0.0}
    refused = sender.post(
        f"/v1/requests/{arms['b'][0]}/scores",
        json={"name": "correction", "value": True, "source": "robot"},
    )
    assert refused.status_code == 422 and refused.json()["detail"].startswith("source:")
    assert correction_rates() == {"control": 0.0, "b": 0.0}
    corrected = sender.post(
        f"/v1/requests/{arms['b'][0]}/scores",
        json={"name": "correction", "value": True, "source": "human", "author": "ops-7",
              "correction": {"action": "room-b@15:00"}},
    )  # fmt: skip
    assert corrected.status_code == 201, corrected.text
    assert correction_rates() == {"control": 0.0, "b": 0.5}
