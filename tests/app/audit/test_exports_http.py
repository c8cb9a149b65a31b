"""`POST /v1/exports`: a background job of the running service, whose bundle verifies offline."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from app.audit import heads, ledger
from app.audit.verify import verify_bundle
from app.registry.mlflow_results import find_results
from collectors import conventions as wire
from tests import otlp
from tests.conftest import LiveService

SECOND = 1_000_000_000
T0 = 1_700_000_000 * SECOND


def _wait(client: httpx.Client, url: str, until: Any, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = client.get(url).raise_for_status().json()
        if until(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_export_job_runs_in_the_service_and_its_bundle_verifies_offline(
    live: LiveService,
) -> None:
    ingest = live.key("shop", "ingest")
    auditor = live.key("shop", "audit")
    ids = otlp.Ids(5)
    spans = []
    for i in range(8):
        spans += otlp.hybrid_trace(
            ids, start=T0 + i * SECOND, **{wire.REQUEST_SUBJECT: f"user-{i % 2}"}
        )
    with live.client(ingest) as client:
        client.post(
            "/v1/traces", content=otlp.request(spans).SerializeToString(), headers=otlp.PROTOBUF
        ).raise_for_status()
        assert client.post("/v1/exports", json={}).status_code == 403  # not an admin's key
    with live.client(auditor) as client:  # an auditor reads exports, but starts none
        assert client.post("/v1/exports", json={}).status_code == 403
    with live.client(live.key("shop", "admin")) as client:
        answer = client.post("/v1/exports", json={"from": "2023-11-14T00:00:00Z"})
        assert answer.status_code == 202, answer.text
        job = answer.json()
    with live.client(auditor) as client:
        assert job["status"] in ("queued", "running", "done")
        url = f"/v1/exports/{job['id']}"
        status = _wait(client, url, lambda s: s["status"] in ("done", "failed"))
        assert status["status"] == "done", status
        assert status["counts"]["requests"] == 8
        assert status["progress"]["done"] == status["progress"]["total"] > 0
        assert client.get(f"{url}/download").status_code == 200
        listed = client.get("/v1/exports").json()["items"]
        assert [j["id"] for j in listed] == [job["id"]]
        bundle = client.get(status["download"]).content
        key_pem = client.get("/v1/audit/public-key").json()["public_key_pem"]
        # Another project's auditor does not see it.
        with live.client(live.key("other", "audit")) as stranger:
            assert stranger.get(url).status_code == 404
            assert stranger.get(f"{url}/download").status_code == 404
        with live.client(live.key("shop", "admin")) as admin:
            bad = admin.post("/v1/exports", json={"from": "2025-01-02", "to": "2024-01-01"})
        assert bad.status_code == 400
        status = _wait(client, url, lambda s: s["mlflow_run_id"] or s["mlflow_note"])
    verdict = verify_bundle(bundle, [heads.load_public_key(key_pem)])
    assert verdict.ok, verdict.summary()
    assert verdict.records == 8 and verdict.mode == "full"
    assert status["mlflow_run_id"], status
    runs = find_results(live.settings.resolved_mlflow_tracking_uri, "export")
    assert status["mlflow_run_id"] in runs
    with live.engine.connect() as conn:
        kinds = [e.kind for e in ledger.iter_events(conn, 1)]
    assert ledger.EXPORT_PRODUCED in kinds
