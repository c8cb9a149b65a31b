"""Drift on the reference stack's traffic as one `warden demo` run sends it: a stream, not
independent samples. Its requests share one calendar that the assistant books into and other
people's bookings churn (examples/booking/sim.py, `Calendar.churn`), so neighbouring
requests are not independent. Plain traffic must be judged "none" on inputs, latent states
and decisions by the default settings (windows of 500, the reference spread across the
version's first period), over several seeds and run lengths, and fire no policy; `--shift`
traffic after it must still be "drift".

One live service; each case is its own project, so each run is one version's whole traffic.
About 5,000 requests through the whole stack in all; seeds are fixed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.drift import settings as drift_settings
from app.registry import lineage
from app.store import schema
from app.store.engine import create_db_engine
from examples.booking import demo
from tests.conftest import LiveService, embedded_settings, running
from tests.examples.test_drift_demo import SPEC, judge, report

DEFAULTS = drift_settings.DriftSettings()
REFERENCE, CURRENT = DEFAULTS.reference_count, DEFAULTS.current_count
# (seed, requests of one plain run): the shortest has just one reference's worth before the
# current window; the longest samples its reference across 2,000 requests.
CASES = ((4, 1000), (5, 1600), (6, 2500))
KINDS = ("input", "latent", "decision")


# About 5,000 requests through the whole stack: a minute on a quiet 2-core machine, more
# than the suite's default limit allows on a busy one.
pytestmark = pytest.mark.timeout(1200)


@dataclass
class Service:
    live: LiveService
    root: Path
    tracking_uri: str


@dataclass
class Judged:
    case: tuple[int, int]
    plain: dict[str, Any]
    shifted: dict[str, Any] | None = None


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("stateful")
    settings = embedded_settings(root)
    engine = create_db_engine(settings)
    schema.upgrade(engine)
    with contextlib.ExitStack() as stack, running(settings, engine) as live:
        stack.callback(engine.dispose)
        yield Service(live, root, settings.mlflow_tracking_uri)


@pytest.fixture(scope="module", params=CASES, ids=[f"seed{s}-{n}" for s, n in CASES])
def judged(service: Service, request: pytest.FixtureRequest) -> Judged:
    """One plain run judged with the project's default drift settings; for the last case,
    judged again after a shifted run."""
    seed, requests = request.param
    live, project = service.live, f"stateful-{seed}"

    def send(count: int, seed: int, shift: bool) -> None:
        result = demo.run(
            live.url, live.key(project, "ingest"), service.tracking_uri,
            fingerprint_secret="drift-test", spool_dir=service.root / f"spool-{project}-{seed}",
            requests=count, seed=seed, shift=shift, spec=SPEC, log=lambda _line: None,
        )  # fmt: skip
        assert result.delivered and result.stats["dropped"] == 0

    admin = live.key(project, "admin")
    send(requests, seed=seed, shift=False)
    lineage.resolve_pending(live.engine, lineage.mlflow_client(service.tracking_uri))
    found = Judged((seed, requests), judge(live, admin))
    if (seed, requests) == CASES[-1]:
        send(CURRENT, seed=9, shift=True)
        found.shifted = judge(live, admin)
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_plain_demo_traffic_is_judged_none(judged: Judged, kind: str) -> None:
    found = report(judged.plain, kind)
    assert found["verdict"] == "none", found["scores"]
    assert found["current"]["requests"] == CURRENT
    if kind == "input":  # inputs are judged against the training dataset
        assert found["reference"]["source"] == "training dataset"
        return
    reference = found["reference"]
    assert reference["source"] == "traffic" and reference["rows"] == REFERENCE
    # Spread across everything before the current window, up to ten references' worth.
    _seed, requests = judged.case
    period = min(requests - CURRENT, 10 * REFERENCE)
    assert reference.get("sampled_from", REFERENCE) == period
    assert reference["end_unix_nano"] <= found["current"]["start_unix_nano"]


def test_plain_demo_traffic_fires_no_policy(judged: Judged) -> None:
    # The built-in drift policies (an alert, and the rollback of a drifting champion) keep
    # quiet on traffic that did not move.
    fired = [v for found in judged.plain["policies"].values() for v in found if v["fired"]]
    assert fired == []
    assert judged.plain["verdict"] == "none"


@pytest.mark.parametrize("kind", KINDS)
def test_shifted_traffic_after_it_is_still_drift(judged: Judged, kind: str) -> None:
    if judged.shifted is None:
        pytest.skip("judged on the last case only")
    found = report(judged.shifted, kind)
    assert found["verdict"] == "drift", found["scores"]
