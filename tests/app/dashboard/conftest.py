"""A live service filled by the reference stack, and a real browser (Debian's Chromium) to
look at its dashboard.

One service for the whole folder (`filled`, built once, in about a minute; the browser and
the service stop when the folder's tests are done): 250 demo requests,
then 100 shifted ones, a drift job after each; two decisions parked for review by a
confidence floor no plan reaches; a registry version without evaluation metrics (the deploy
gates refuse it); a trace of 50,000 spans; a signed tree head. Tests that change something
(approve a review, try a promotion) each use their own object, so they can run in any order.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import insert

from app.audit.ledger import checkpoints
from app.drift import settings as drift_settings
from app.drift.job import DriftRunner
from app.registry import lineage
from app.store import schema
from app.store.engine import create_db_engine, write_transaction
from app.store.tables import Request, Span
from app.tenancy import projects
from examples.booking import demo
from examples.booking.registry import TrainingSpec
from examples.booking.world_model import TrainConfig
from policies import BUILTIN, PolicySet
from tests.conftest import LiveService, embedded_settings, running

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "screenshots"
SPEC = TrainingSpec(n_samples=3000, train=TrainConfig(epochs=2))
MODEL = "booking-world-model"
REFERENCE, CURRENT = 150, 100
BIG_TRACE_SPANS = 50_000
PROJECT = "default"
GOOD = {"val_conflict_auc": 0.96, "val_conflict_accuracy": 0.94}


@dataclass
class Filled:
    live: LiveService
    tracking_uri: str
    admin: str
    audit: str
    read: str
    ingest: str
    reviews: list[int]
    refused_version: str
    fit_version: str
    big_trace: str
    drift_run_id: str | None

    @property
    def url(self) -> str:
        return self.live.url


def _park_for_review(live: LiveService, key: str, tracking_uri: str, root: Path) -> list[int]:
    """Two requests whose plans a confidence floor of 0.9999 sends to a person."""
    import collectors
    from examples.booking.instrumented import InstrumentedAssistant
    from examples.booking.registry import load_world_model

    folder = root / "review-policies"
    folder.mkdir()
    source = (BUILTIN / "planner-confidence-floor.yaml").read_text()
    (folder / "planner-confidence-floor.yaml").write_text(
        source.replace("confidence: 0.6", "confidence: 0.9999")
    )
    loaded = load_world_model(tracking_uri, f"models:/{MODEL}/1")
    collectors.init(endpoint=live.url, api_key=key, fingerprint_secret="dashboard-test",
                    spool_dir=root / "spool-review", policies=folder)  # fmt: skip
    assistant = InstrumentedAssistant(loaded.model, MODEL, "1")
    try:
        for text in ("a room for 6 people tomorrow 3-5pm, with a projector",
                     "a room for 4 people on friday 10-11am"):  # fmt: skip
            assistant.handle(text, subject="reviewer-test")
    finally:
        assistant.close()
        assert collectors.flush(30)
        collectors.shutdown()
    with live.client(live.key(PROJECT, "read")) as client:
        items = client.get("/v1/reviews").raise_for_status().json()["items"]
    return [int(item["id"]) for item in items]


def _registered(tracking_uri: str, metrics: dict[str, float], dataset: bool) -> str:
    """A new registered version of the world model, trained (as far as MLflow knows) by a
    run with `metrics` and, with `dataset`, its training data logged."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.get_experiment_by_name("dashboard-tests")
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("dashboard-tests")
    )
    run = client.create_run(experiment_id)
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    if dataset:
        data = Dataset("booking-sim", "ebf00c0e", "local", "file:///data/sim.parquet")
        tag = InputTag("mlflow.data.context", "training")
        client.log_inputs(run.info.run_id, datasets=[DatasetInput(data, [tag])])
    client.set_terminated(run.info.run_id)
    created = client.create_model_version(
        MODEL, f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    return str(created.version)


def _big_trace(live: LiveService, spans: int = BIG_TRACE_SPANS) -> str:
    """A request whose trace holds `spans` spans (a root, 50 stages, the rest leaves),
    written straight into the tables."""
    engine = live.engine
    pid = projects.project_id(engine, PROJECT)
    rng = random.Random(7)
    trace_id = f"{rng.getrandbits(128):032x}"
    start = time.time_ns() - 3_600 * 1_000_000_000
    root = f"{rng.getrandbits(64):016x}"
    stages = [f"{rng.getrandbits(64):016x}" for _ in range(50)]
    rows: list[dict[str, Any]] = []

    def span(span_id: str, parent: str | None, name: str, t0: int, t1: int) -> None:
        rows.append({
            "project_id": pid, "trace_id": trace_id, "span_id": span_id,
            "parent_span_id": parent, "name": name, "kind": 1, "start_time_unix_nano": t0,
            "end_time_unix_nano": t1, "status_code": 0, "status_message": None,
            "service_name": "batch-planner", "scope_name": "tests", "attributes": {"i": len(rows)},
            "events": [], "links": [], "resource": {}, "body_digest": os.urandom(32),
        })  # fmt: skip

    span(root, None, "batch", start, start + 60_000_000_000)
    for i, stage in enumerate(stages):
        span(stage, root, f"stage {i}", start + i * 1_000_000_000, start + (i + 1) * 1_000_000_000)
    for i in range(spans - 1 - len(stages)):
        parent = stages[i % len(stages)]
        t0 = start + (i % 50) * 1_000_000_000 + i * 1000
        span(f"{rng.getrandbits(64):016x}", parent, f"step {i}", t0, t0 + 500_000)
    with write_transaction(engine) as conn:
        conn.execute(insert(Span), rows)
        conn.execute(
            insert(Request).values(
                project_id=pid, trace_id=trace_id, root_span_id=root, name="batch",
                service_name="batch-planner", start_time_unix_nano=start,
                end_time_unix_nano=start + 60_000_000_000, duration_ms=60_000.0, status="ok",
                fingerprint=None, fingerprint_key_id=None, subject=None, outcome="batch",
                models={}, features=None,
            )
        )  # fmt: skip
    return trace_id


@pytest.fixture(scope="package")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    root = tmp_path_factory.mktemp("dashboard")
    settings = embedded_settings(root, audit_checkpoint_interval=0, dashboard_rollup_interval=1)
    tracking_uri = settings.mlflow_tracking_uri
    engine = create_db_engine(settings)
    schema.upgrade(engine)
    with contextlib.ExitStack() as stack, running(settings, engine) as live:
        stack.callback(engine.dispose)
        ingest = live.key(PROJECT, "ingest")
        pid = projects.project_id(engine, PROJECT)
        drift_settings.update_settings(
            engine, pid, {"reference_count": REFERENCE, "current_count": CURRENT}
        )
        runner = DriftRunner(engine, tracking_uri, settings.data_dir,
                             PolicySet.load_dir(BUILTIN))  # fmt: skip

        def send(requests: int, seed: int, shift: bool) -> None:
            result = demo.run(
                live.url, ingest, tracking_uri, fingerprint_secret="dashboard-test",
                spool_dir=root / f"spool-{seed}", requests=requests, seed=seed, shift=shift,
                spec=SPEC, log=lambda _line: None,
            )  # fmt: skip
            assert result.delivered and result.stats["dropped"] == 0

        send(REFERENCE + CURRENT, seed=1, shift=False)
        lineage.resolve_pending(engine, lineage.mlflow_client(tracking_uri))
        runner.run(PROJECT)
        send(CURRENT, seed=3, shift=True)
        shifted = runner.run(PROJECT)
        reviews = _park_for_review(live, ingest, tracking_uri, root)
        assert len(reviews) == 2, reviews
        lineage.resolve_pending(engine, lineage.mlflow_client(tracking_uri))
        # The demo's quickly trained v1 misses the promotion bar; v2 logged no metrics at
        # all (refused); v3 has the metrics and its data (allowed).
        refused = _registered(tracking_uri, {"val_loss": 0.2}, dataset=False)
        fit = _registered(tracking_uri, GOOD, dataset=True)
        big = _big_trace(live)
        # The service's own signing key (the data folder's), so its signature verifies.
        checkpoints.sign_now(engine, checkpoints.signing_key(settings), pid)
        yield Filled(
            live=live, tracking_uri=tracking_uri, admin=live.key(PROJECT, "admin"),
            audit=live.key(PROJECT, "audit"), read=live.key(PROJECT, "read"), ingest=ingest,
            reviews=reviews, refused_version=refused, fit_version=fit, big_trace=big,
            drift_run_id=shifted.versions[0].mlflow_run_id if shifted.versions else None,
        )  # fmt: skip


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(
            f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install chromium`; "
            "`.ci/run` does). Never `playwright install`: there is no network."
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="package")
def screenshots() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
