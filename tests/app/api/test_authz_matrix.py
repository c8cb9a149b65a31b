"""The authorization matrix, generated from /openapi.json: every operation of the document
is tried without a key and with a key of each scope (ingest, read, audit, admin), and with
another project's ids.

- What each operation needs is written once below (`NEEDS`); the document must list exactly
  those operations, so a new route fails here until it is placed in the matrix.
- The document's declared answers match what the route does: 401 declared iff it refuses a
  request without a key; 403 declared iff some key is refused for its scope.
- A key whose scopes do not grant what the route needs gets 403; one that does never 401/403.
- No write (POST, PUT, DELETE) succeeds with a read or an audit key.
- Another project's ids answer 404, and no answer to one project names another's data.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.tenancy.keys import GRANTS, Scope
from tests import otlp
from tests.conftest import LiveService

PUBLIC = "public"  # no key needed
ANY_KEY = "any key"  # a key of the project, any scope

NEEDS: dict[tuple[str, str], str] = {
    ("POST", "/v1/traces"): Scope.INGEST,
    ("GET", "/v1/requests"): Scope.READ,
    ("GET", "/v1/requests/{request_id}"): Scope.READ,
    ("GET", "/v1/requests/{request_id}/lineage"): Scope.READ,
    ("GET", "/v1/requests/{request_id}/shadows"): Scope.READ,
    ("GET", "/v1/traces/{trace_id}"): Scope.READ,
    ("PUT", "/v1/score-configs/{name}"): Scope.ADMIN,
    ("DELETE", "/v1/score-configs/{name}"): Scope.ADMIN,
    ("GET", "/v1/score-configs"): Scope.READ,
    ("POST", "/v1/requests/{request_id}/scores"): Scope.INGEST,
    ("GET", "/v1/requests/{request_id}/scores"): Scope.READ,
    ("PUT", "/v1/tensors/{digest}"): Scope.INGEST,
    ("GET", "/v1/tensors/{digest}"): Scope.READ,
    ("GET", "/v1/policies/bundle"): ANY_KEY,
    ("POST", "/v1/models/{name}/promote"): Scope.ADMIN,
    ("POST", "/v1/models/{name}/rollback"): Scope.ADMIN,
    ("GET", "/v1/models"): Scope.READ,
    ("GET", "/v1/models/{name}/versions/{version}"): Scope.READ,
    ("GET", "/v1/reviews"): Scope.READ,
    ("POST", "/v1/reviews/{review_id}/approve"): Scope.ADMIN,
    ("POST", "/v1/reviews/{review_id}/reject"): Scope.ADMIN,
    ("POST", "/v1/drift/run"): Scope.ADMIN,
    ("GET", "/v1/drift"): Scope.READ,
    ("GET", "/v1/audit/public-key"): PUBLIC,
    ("GET", "/v1/audit/heads"): Scope.AUDIT,
    ("POST", "/v1/audit/heads"): Scope.ADMIN,
    ("GET", "/v1/audit/heads/latest"): Scope.AUDIT,
    ("GET", "/v1/audit/events"): Scope.AUDIT,
    ("GET", "/v1/audit/proof/{seq}"): Scope.AUDIT,
    ("GET", "/v1/audit/consistency"): Scope.AUDIT,
    ("POST", "/v1/audit/erasures"): Scope.ADMIN,
    ("GET", "/v1/exports"): Scope.AUDIT,
    ("POST", "/v1/exports"): Scope.ADMIN,
    ("GET", "/v1/exports/{export_id}"): Scope.AUDIT,
    ("GET", "/v1/exports/{export_id}/download"): Scope.AUDIT,
    ("POST", "/v1/infer"): Scope.INGEST,
    ("POST", "/v1/experiments"): Scope.ADMIN,
    ("GET", "/v1/experiments"): Scope.READ,
    ("GET", "/v1/experiments/{name}"): Scope.READ,
    ("POST", "/v1/experiments/{name}/stop"): Scope.ADMIN,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
}
WRITES = {"POST", "PUT", "DELETE", "PATCH"}
# Path parameters that are a project's own numbering, not ids of its data (the ledger's
# sequence numbers): the same number names each project's own event.
NUMBERING = {"seq"}
# Writes to the caller's own project whatever the id names (a content address, a config's
# name), or to a registered model, which MLflow names, not a project.
NOT_PROJECT_IDS = {
    ("PUT", "/v1/tensors/{digest}"),
    ("PUT", "/v1/score-configs/{name}"),
    ("POST", "/v1/models/{name}/promote"),
    ("POST", "/v1/models/{name}/rollback"),
}
# Valid bodies, so an answer is about who asks, not about what was sent.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/requests/{request_id}/scores"): {"name": "rating", "value": 3},
    ("PUT", "/v1/score-configs/{name}"): {"data_type": "numeric"},
    ("POST", "/v1/models/{name}/promote"): {"version": "1"},
}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Authorization does not depend on the database: SQLite only."""
    return f"sqlite:///{tmp_path / 'warden.db'}"


def _npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.arange(4, dtype=np.float32))
    return buffer.getvalue()


@dataclass
class Foreign:
    """Another project's data, and its ids as path parameters."""

    ids: dict[str, str] = field(default_factory=dict)

    def secrets(self) -> list[str]:
        """Strings that no answer to the first project may contain."""
        return [self.ids["request_id"], self.ids["export_id"], self.ids["digest"]]


def foreign_project(live: LiveService) -> Foreign:
    key = live.key("other", "admin")
    spans = otlp.hybrid_trace(otlp.Ids(99))
    trace_id = spans[0].trace_id.hex()
    body = _npy()
    digest = hashlib.sha256(body).hexdigest()
    with live.client(key) as client:
        client.post(
            "/v1/traces", content=otlp.request(spans).SerializeToString(), headers=otlp.PROTOBUF
        ).raise_for_status()
        request_id = client.get("/v1/requests").raise_for_status().json()["items"][0]["request_id"]
        client.put(f"/v1/tensors/{digest}", content=body).raise_for_status()
        client.put("/v1/score-configs/rating", json={"data_type": "numeric"}).raise_for_status()
        client.post(
            f"/v1/requests/{request_id}/scores", json={"name": "rating", "value": 3}
        ).raise_for_status()
        client.post("/v1/audit/heads").raise_for_status()
        export_id = client.post("/v1/exports", json={}).raise_for_status().json()["id"]
    return Foreign(
        {
            "request_id": request_id,
            "trace_id": trace_id,
            "digest": digest,
            "name": "rating",
            "version": "1",
            "review_id": "1",
            "seq": "1",
            "export_id": export_id,
        }
    )


def _call(client: httpx.Client, method: str, path: str, ids: dict[str, str]) -> httpx.Response:
    url = re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)
    if method == "PUT" and "/tensors/" in path:
        return client.request(method, url, content=_npy())
    if method in WRITES:
        return client.request(method, url, json=BODIES.get((method, path), {}))
    params = {"first": "0"} if path == "/v1/audit/consistency" else {}
    return client.request(method, url, params=params)


def _grants(scope: Scope, needs: str) -> bool:
    return needs in (PUBLIC, ANY_KEY) or Scope(needs) in GRANTS[scope]


def test_every_operation_answers_each_scope_as_declared(live: LiveService) -> None:
    with live.client() as client:
        document: dict[str, Any] = client.get("/openapi.json").raise_for_status().json()
    operations = {
        (method.upper(), path): operation
        for path, ops in document["paths"].items()
        for method, operation in ops.items()
    }
    assert set(operations) == set(NEEDS), "place every operation of the document in NEEDS"

    foreign = foreign_project(live)
    keys = {scope: live.key("own", scope.value) for scope in Scope}
    own_ids = dict(foreign.ids, request_id="0" * 32, trace_id="0" * 32, digest="0" * 64,
                   export_id="0" * 32, name="missing")  # fmt: skip
    wrong: list[str] = []
    for (method, path), operation in sorted(operations.items()):
        needs = NEEDS[(method, path)]
        declared = set(operation["responses"])
        label = f"{method} {path}"
        with live.client() as anonymous:
            answer = _call(anonymous, method, path, own_ids)
        if needs == PUBLIC:
            if answer.status_code in (401, 403) or "401" in declared:
                wrong.append(f"{label}: public, yet {answer.status_code} / declares 401")
        elif answer.status_code != 401 or "401" not in declared:
            wrong.append(f"{label} without a key: {answer.status_code}, declares {declared}")
        if needs not in (PUBLIC, ANY_KEY) and "403" not in declared:
            wrong.append(f"{label}: refuses scopes, declares no 403")
        for scope, key in keys.items():
            with live.client(key) as client:
                answer = _call(client, method, path, own_ids)
                foreign_answer = _call(client, method, path, foreign.ids)
            allowed = _grants(scope, needs)
            for sent, got in (("own", answer), ("foreign", foreign_answer)):
                if allowed and got.status_code in (401, 403):
                    wrong.append(f"{label} {scope} ({sent} ids): refused {got.status_code}")
                if not allowed and got.status_code != 403:
                    wrong.append(f"{label} {scope} ({sent} ids): {got.status_code}, not 403")
                if got.status_code >= 500:
                    wrong.append(f"{label} {scope} ({sent} ids): {got.status_code} {got.text}")
                if method in WRITES and scope in (Scope.READ, Scope.AUDIT) and got.is_success:
                    wrong.append(f"{label} {scope}: a write succeeded")
                leaked = [s for s in foreign.secrets() if got.is_success and s in got.text]
                if leaked:
                    wrong.append(f"{label} {scope} ({sent} ids): names {leaked}")
            params = set(re.findall(r"\{(\w+)\}", path))
            if (
                allowed
                and params
                and not params & NUMBERING
                and (method, path) not in NOT_PROJECT_IDS
                and foreign_answer.status_code != 404
            ):
                wrong.append(
                    f"{label} {scope} with another project's ids: {foreign_answer.status_code}"
                    f" {foreign_answer.text[:120]}"
                )
    assert wrong == [], "\n".join(wrong)

    # The other project's data is all still there.
    with live.client(live.key("other", "read")) as client:
        assert client.get(f"/v1/requests/{foreign.ids['request_id']}").status_code == 200
        assert client.get(f"/v1/tensors/{foreign.ids['digest']}").status_code == 200
        configs = client.get("/v1/score-configs").raise_for_status().json()["items"]
        assert [c["name"] for c in configs] == ["rating"]
