"""Schemathesis over the live service's /openapi.json: every operation, every built-in check
(server errors, status codes, content types, response schemas and headers, invalid data
rejected, valid data accepted, auth not ignored), with valid and invalid examples sent over
real HTTP with an admin key of one project (admin grants every scope).

Each operation is one test, listed from the routers (the document needs a running service,
and collection runs before fixtures); the live document lists the same operations.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.api.routes import (
    audit,
    drift,
    experiments,
    exports,
    gateway,
    health,
    ingest,
    models,
    policies,
    requests,
    reviews,
    scores,
    tensors,
)
from app.config import Settings
from app.store import schema as store_schema
from app.store.engine import create_db_engine
from tests.conftest import TEST_SECRET, LiveService, running

# Bounded, so the file runs in a couple of minutes on two shared cores in every `make test`.
MAX_EXAMPLES = 10
# The suite sends the same examples every run, so a red run is a change's doing and can be
# run again; WARDEN_FUZZ_RANDOM=1 draws new ones each run (with `--hypothesis-seed=N` to
# repeat one), to look for what the fixed ones miss.
EXPLORE = os.environ.get("WARDEN_FUZZ_RANDOM") == "1"
_ROUTERS = (
    audit, drift, experiments, exports, gateway, health, ingest, models, policies, requests,
    reviews, scores, tensors,
)  # fmt: skip
# Rules between fields that JSON Schema in this document does not state, each answered 400
# (or 422) with a detail naming them: a request valid field by field may still be refused.
CROSS_FIELD_RULES = {
    ("GET", "/v1/requests"): "policy_outcome needs policy_id",
    ("GET", "/v1/drift"): "model_version needs model_name",
    ("PUT", "/v1/tensors/{digest}"): "the digest is the SHA-256 of the body",
    ("POST", "/v1/drift/run"): "model_name and model_version together",
    ("POST", "/v1/exports"): "`from` and `to` are ISO 8601 times, `model` is name[/version]",
    ("POST", "/v1/experiments"): "names are slugs; arms name versions of the stage",
    ("POST", "/v1/traces"): "the body is OTLP (protobuf or JSON) in its declared content type",
    ("PUT", "/v1/score-configs/{name}"): "a range only for numeric configs, categories (text) "
    "only for categorical ones",
}
OPERATIONS = sorted(
    (method, route.path)
    for module in _ROUTERS
    for route in module.router.routes
    if isinstance(route, APIRoute) and route.include_in_schema
    for method in route.methods
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """One service on SQLite for the whole file."""
    root: Path = tmp_path_factory.mktemp("schemathesis")
    config = Settings(
        data_dir=root / "data",
        database_url=f"sqlite:///{root / 'warden.db'}",
        mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        secret_key=TEST_SECRET,
        lineage_interval=0,
        drift_tick=0,
        audit_checkpoint_interval=0,
    )
    engine = create_db_engine(config)
    store_schema.upgrade(engine)
    with running(config, engine) as live:
        yield live
    engine.dispose()


@pytest.fixture(scope="module")
def api_schema(service: LiveService) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{service.url}/openapi.json")


@pytest.fixture(scope="module")
def admin_key(service: LiveService) -> str:
    return service.key("fuzz", "admin")


def every_check() -> list[schemathesis.CheckFunction]:
    load_all_checks()
    return list(CHECKS.get_all())  # type: ignore[arg-type]


def test_the_document_lists_every_operation(api_schema: schemathesis.BaseSchema) -> None:
    listed = sorted(
        (result.ok().method.upper(), result.ok().path) for result in api_schema.get_all_operations()
    )
    assert listed == OPERATIONS


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=str)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_keeps_its_contract(
    api_schema: schemathesis.BaseSchema,
    admin_key: str,
    method: str,
    path: str,
    mode: schemathesis.GenerationMode,
) -> None:
    operation = api_schema[path][method]
    checks = every_check()
    if (method, path) in CROSS_FIELD_RULES:
        checks.remove(positive_data_acceptance)

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=not EXPLORE,
    )
    def answers(case: schemathesis.Case) -> None:
        case.call_and_validate(
            headers={"Authorization": f"Bearer {admin_key}"}, checks=checks, timeout=30
        )

    try:
        answers()
    except Unsatisfiable:
        # Hypothesis proved that no request breaks the document (no parameter, no body, or
        # only free text): nothing invalid exists to send.
        assert mode is schemathesis.GenerationMode.NEGATIVE
        pytest.skip(f"{method} {path} takes nothing that can be invalid")
