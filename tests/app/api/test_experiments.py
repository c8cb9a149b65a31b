"""/v1/experiments over HTTP against the real service, and the bundle that carries the running
experiments to the SDKs: per project, under an ETag that changes on create and stop only;
the results shown with an experiment, stored or computed again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from app.store.engine import write_transaction
from app.store.tables import Experiment
from tests.app.experiments import traffic
from tests.app.experiments.test_results import ab_test
from tests.app.experiments.traffic import SECOND, T0, Req
from tests.conftest import LiveService

BODY: dict[str, Any] = {
    "name": "wm-v2",
    "stage": "world_model",
    "arms": [
        {"name": "control", "model": "models:/booking-world-model/1"},
        {"name": "v2", "model": "models:/booking-world-model/2"},
    ],
    "primary_kpi": "plan_success_rate",
    "guardrails": ["deny_rate"],
}


def test_create_list_show_stop(live: LiveService) -> None:
    admin = live.key("shop", "admin")
    reader = live.key("shop", "read")
    with live.client(admin) as client:
        created = client.post("/v1/experiments", json=BODY)
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "running"
        again = client.post("/v1/experiments", json=BODY | {"name": "wm-v3"})
        assert again.status_code == 409
        assert "'wm-v2' is running on stage world_model already" in again.json()["detail"]
    with live.client(reader) as client:
        assert client.post("/v1/experiments", json=BODY | {"name": "x"}).status_code == 403
        (item,) = client.get("/v1/experiments").json()["items"]
        assert (item["name"], item["unit"], item["primary_kpi"]) == (
            "wm-v2", "subject", "plan_success_rate",
        )  # fmt: skip
        shown = client.get("/v1/experiments/wm-v2").json()
        assert shown["counts"] == {"control": 0, "v2": 0}
        assert shown["results"] is None
        assert client.get("/v1/experiments/nope").status_code == 404
        assert client.get("/v1/experiments?status=later").status_code == 400
    with live.client(live.key("other", "read")) as client:
        assert client.get("/v1/experiments/wm-v2").status_code == 404
        assert client.get("/v1/experiments").json()["items"] == []
    with live.client(admin) as client:
        stopped = client.post("/v1/experiments/wm-v2/stop")
        assert stopped.status_code == 200
        assert stopped.json()["status"] == "stopped" and stopped.json()["stopped_at"]
        assert client.post("/v1/experiments/wm-v2/stop").status_code == 409
        assert client.get("/v1/experiments?status=running").json()["items"] == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"stage": "llm"}, "stage"),
        ({"arms": BODY["arms"][:1]}, "arms"),
        ({"arms": [BODY["arms"][0], {"name": "v2", "model": "booking/2"}]}, "arms[1].model"),
        ({"primary_kpi": "clicks"}, "primary_kpi"),
        ({"shadows": [{"name": "s", "model": "models:/m/3", "sample_rate": 0}]},
         "shadows[0].sample_rate"),
    ],
)  # fmt: skip
def test_an_invalid_body_is_422_naming_the_field(
    live: LiveService, change: dict[str, Any], field: str
) -> None:
    with live.client(live.key("shop", "admin")) as client:
        answer = client.post("/v1/experiments", json=BODY | change)
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"].startswith(f"{field}: ")
        assert client.get("/v1/experiments").json()["items"] == []


def test_a_malformed_body_is_400(live: LiveService) -> None:
    with live.client(live.key("shop", "admin")) as client:
        answer = client.post("/v1/experiments", json={"name": "x"})
    assert answer.status_code == 400
    assert "stage" in answer.json()["detail"]


def test_the_bundle_carries_the_projects_running_experiments_under_its_etag(
    live: LiveService,
) -> None:
    admin = live.key("shop", "admin")
    other = live.key("other", "ingest")
    with live.client(admin) as client, live.client(other) as elsewhere:
        first = client.get("/v1/policies/bundle")
        etag = first.headers["ETag"]
        assert first.json()["experiments"] == []
        assert etag == f'"{first.json()["hash"]}"'
        assert client.get("/v1/policies/bundle", headers={"If-None-Match": etag}).status_code == 304

        assert client.post("/v1/experiments", json=BODY).status_code == 201
        assert client.get("/v1/policies/bundle", headers={"If-None-Match": etag}).status_code == 200
        running = client.get("/v1/policies/bundle")
        created_etag = running.headers["ETag"]
        assert created_etag != etag
        (entry,) = running.json()["experiments"]
        assert entry["name"] == "wm-v2" and len(entry["salt"]) == 32
        assert [a["name"] for a in entry["arms"]] == ["control", "v2"]
        # Unchanged: the same ETag, a 304 — also after a change of another kind.
        assert client.post("/v1/experiments", json=BODY | {"name": "bad", "stage": "x"}).is_error
        same = client.get("/v1/policies/bundle", headers={"If-None-Match": created_etag})
        assert same.status_code == 304
        # Another project's bundle does not see it.
        theirs = elsewhere.get("/v1/policies/bundle")
        assert theirs.json()["experiments"] == [] and theirs.headers["ETag"] == etag

        assert client.post("/v1/experiments/wm-v2/stop").status_code == 200
        after = client.get("/v1/policies/bundle", headers={"If-None-Match": created_etag})
        assert after.status_code == 200
        assert after.json()["experiments"] == []
        assert after.headers["ETag"] != created_etag


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_show_holds_the_results_computed_when_stale_or_asked_for(live: LiveService) -> None:
    pid = traffic.project(live.engine, "shop")
    ab_test(live.engine, pid)
    with live.client(live.key("shop", "read")) as client:
        shown = client.get("/v1/experiments/wm-ab").raise_for_status().json()
        results = shown["results"]
        assert shown["counts"] == {"control": 60, "challenger": 60}
        assert results["srm"]["mismatch"] is False
        challenger = results["arms"]["challenger"]
        assert challenger["verdict"] == "worse" and challenger["n"] == 60
        assert challenger["comparisons"]["plan_success_rate"]["ci_high"] < 0
        assert challenger["guardrails_breached"] == ["latency_p95_ms"]

        # More traffic: shown as stored while fresh, computed again when asked for.
        more = [Req(start=T0 + 100 * SECOND + i, version="1") for i in range(10)]
        traces = traffic.ingest(live.engine, pid, more, seed=21)
        traffic.assign(live.engine, pid, "wm-ab", "control", traces, [r.start for r in more])
        again = client.get("/v1/experiments/wm-ab").json()
        assert again["results"]["computed_at"] == results["computed_at"]
        assert again["results"]["arms"]["control"]["n"] == 60
        assert again["counts"]["control"] == 70
        forced = client.get("/v1/experiments/wm-ab", params={"refresh": "true"}).json()
        assert forced["results"]["computed_at"] > results["computed_at"]
        assert forced["results"]["arms"]["control"]["n"] == 70

    # Stale results (older than the maximum age) are computed again without asking.
    with write_transaction(live.engine) as conn:
        conn.execute(
            update(Experiment).values(results_at=datetime.now(UTC) - timedelta(minutes=5))
        )
    with live.client(live.key("shop", "read")) as client:
        stale = client.get("/v1/experiments/wm-ab").json()
    assert stale["results"]["computed_at"] > forced["results"]["computed_at"]
