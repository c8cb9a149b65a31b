"""The query API: filters, cursor pagination, traces, health and metrics, per project."""

from __future__ import annotations

import pytest

from collectors import conventions as wire
from tests import otlp
from tests.conftest import LiveService

SECOND = 1_000_000_000
T0 = 1_700_000_000 * SECOND  # 2023-11-14T22:13:20Z


@pytest.fixture
def stored(live: LiveService) -> tuple[LiveService, str, list[str]]:
    """Ten requests a second apart; odd ones served by world model v4 and denied."""
    key = live.key("shop", "ingest", "read")
    ids = otlp.Ids(42)
    trace_ids = []
    spans = []
    for i in range(10):
        extra = {}
        if i % 2:
            extra = {wire.model_version("world_model"): "4", wire.REQUEST_OUTCOME: "denied"}
        extra[wire.REQUEST_FINGERPRINT] = f"{i:064x}"
        trace = otlp.hybrid_trace(ids, start=T0 + i * SECOND, **extra)
        trace_ids.append(trace[0].trace_id.hex())
        spans += trace
    with live.client(key) as client:
        client.post(
            "/v1/traces", content=otlp.request(spans).SerializeToString(), headers=otlp.PROTOBUF
        ).raise_for_status()
    return live, key, trace_ids


def test_requests_are_listed_newest_first_and_paginate_by_cursor(
    stored: tuple[LiveService, str, list[str]],
) -> None:
    live, key, trace_ids = stored
    seen: list[str] = []
    cursor = None
    with live.client(key) as client:
        for _ in range(5):
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/requests", params=params).raise_for_status().json()
            seen += [item["request_id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert seen == list(reversed(trace_ids))
    assert cursor is None


def test_filters_by_time_model_outcome_and_fingerprint(
    stored: tuple[LiveService, str, list[str]],
) -> None:
    live, key, trace_ids = stored

    def ids(**params: object) -> list[str]:
        with live.client(key) as client:
            page = client.get("/v1/requests", params=params).raise_for_status().json()
        return sorted(item["request_id"] for item in page["items"])

    assert ids(since="2023-11-14T22:13:23Z", until="2023-11-14T22:13:25Z") == sorted(trace_ids[3:5])
    assert ids(model_name="booking-world-model", model_version="4") == sorted(trace_ids[1::2])
    assert ids(model_name="booking-world-model") == sorted(trace_ids)
    assert ids(model_name="mpc-planner", model_version="4") == []
    assert ids(outcome="denied") == sorted(trace_ids[1::2])
    assert ids(outcome="booked", since="2023-11-14T22:13:26Z") == sorted(
        [trace_ids[6], trace_ids[8]]
    )
    assert ids(fingerprint=f"{7:064x}") == [trace_ids[7]]


def test_bad_query_parameters_are_400_with_a_reason(
    stored: tuple[LiveService, str, list[str]],
) -> None:
    live, key, _ = stored
    with live.client(key) as client:
        answer = client.get("/v1/requests", params={"cursor": "not-a-cursor"})
        assert answer.status_code == 400
        assert "invalid cursor" in answer.json()["detail"]
        answer = client.get("/v1/requests", params={"limit": 0})
        assert answer.status_code == 400
        assert "limit" in answer.json()["detail"]
        answer = client.get("/v1/requests", params={"since": "yesterday"})
        assert answer.status_code == 400
        assert "since" in answer.json()["detail"]
        answer = client.get("/v1/requests", params={"model_version": "3"})
        assert answer.status_code == 400
        assert "model_name" in answer.json()["detail"]
        # A number is not read as seconds since 1970: times are ISO 8601.
        for number in ("220", "1700000000000", "-9e-112"):
            answer = client.get("/v1/requests", params={"until": number})
            assert answer.status_code == 400, number
            assert "until" in answer.json()["detail"] and "ISO 8601" in answer.json()["detail"]
        answer = client.get("/v1/drift", params={"since": "220"})
        assert answer.status_code == 400


def test_a_trace_and_its_request_from_another_project_are_404(
    stored: tuple[LiveService, str, list[str]],
) -> None:
    live, key, trace_ids = stored
    with live.client(key) as client:
        trace = client.get(f"/v1/traces/{trace_ids[0]}").raise_for_status().json()
        assert {s["name"] for s in trace["spans"]} == {
            "request",
            "llm",
            wire.ROLLOUT_SPAN,
            wire.DECISION_SPAN,
        }
        assert [n["name"] for n in trace["span_tree"]] == ["request"]
        assert client.get(f"/v1/traces/{'0' * 32}").status_code == 404
    stranger = live.key("rival", "read", "ingest", "admin")
    with live.client(stranger) as client:
        assert client.get(f"/v1/requests/{trace_ids[0]}").status_code == 404
        assert client.get(f"/v1/traces/{trace_ids[0]}").status_code == 404
        assert client.get("/v1/requests").json()["items"] == []


def test_scopes_guard_the_read_endpoints(stored: tuple[LiveService, str, list[str]]) -> None:
    live, _, trace_ids = stored
    ingest_only = live.key("shop", "ingest")
    auditor = live.key("shop", "audit")
    with live.client(ingest_only) as client:
        answer = client.get("/v1/requests")
        assert answer.status_code == 403
        assert "'read' scope" in answer.json()["detail"]
    with live.client(auditor) as client:
        assert client.get(f"/v1/requests/{trace_ids[0]}").status_code == 200
    with live.client() as client:
        assert client.get("/v1/requests").status_code == 401


def test_health_readiness_metrics_and_openapi(stored: tuple[LiveService, str, list[str]]) -> None:
    live, _, _ = stored
    with live.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}
        metrics = client.get("/metrics").text
        spec = client.get("/openapi.json").json()
    assert "warden_ingested_spans_total 40.0" in metrics
    assert "warden_ingested_requests_total 10.0" in metrics
    assert (
        'warden_http_request_duration_seconds_count{method="POST",route="/v1/traces",'
        'status="200"} 1.0' in metrics
    )
    assert {
        "/v1/traces",
        "/v1/requests",
        "/v1/requests/{request_id}",
        "/v1/traces/{trace_id}",
    } <= set(spec["paths"])
