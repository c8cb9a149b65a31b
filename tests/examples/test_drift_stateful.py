"""Drift on the reference stack's stateful traffic: each `warden demo` run books into one
calendar that fills as it goes, so a version's early and late requests meet different
calendars (the world model's state inputs carry the day, hour and building loads). Plain
traffic must be judged "none" on inputs, latent states and decisions by the default
reference (the requests just before the current window), over several seeds and run lengths;
`--shift` traffic after it must still be "drift"; and the same plain traffic judged against
the version's first requests (the default before) is "drift", which is why that is no longer
the default.

One live service; each case is its own project, so each run is one version's whole traffic.
About 2,000 requests through the whole stack in all; seeds are fixed.
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
from app.tenancy import projects
from examples.booking import demo
from tests.conftest import LiveService, embedded_settings, running
from tests.examples.test_drift_demo import SPEC, judge, report

REFERENCE, CURRENT = 300, 200
# (seed, requests of one plain run): lengths past the calendar's first fast fill, where the
# loads still climb (README "Drift" gives the figures of shorter runs).
CASES = ((4, 800), (5, 1000))
KINDS = ("input", "latent", "decision")


@dataclass
class Stateful:
    live: LiveService
    root: Path
    tracking_uri: str
    plain: dict[int, dict[str, Any]]
    first: dict[str, Any]
    shifted: dict[str, Any]


@pytest.fixture(scope="module")
def stateful(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stateful]:
    root = tmp_path_factory.mktemp("stateful")
    settings = embedded_settings(root)
    tracking_uri = settings.mlflow_tracking_uri
    engine = create_db_engine(settings)
    schema.upgrade(engine)
    with contextlib.ExitStack() as stack, running(settings, engine) as live:
        stack.callback(engine.dispose)

        def send(project: str, requests: int, seed: int, shift: bool) -> None:
            result = demo.run(
                live.url, live.key(project, "ingest"), tracking_uri,
                fingerprint_secret="drift-test", spool_dir=root / f"spool-{project}-{seed}",
                requests=requests, seed=seed, shift=shift, spec=SPEC, log=lambda _line: None,
            )  # fmt: skip
            assert result.delivered and result.stats["dropped"] == 0

        def configure(project: str, **changes: Any) -> None:
            windows = {"reference_count": REFERENCE, "current_count": CURRENT}
            pid = projects.project_id(engine, project)
            drift_settings.update_settings(engine, pid, windows | changes)

        plain: dict[int, dict[str, Any]] = {}
        for seed, requests in CASES:
            project = f"stateful-{seed}"
            send(project, requests, seed=seed, shift=False)
            configure(project)
            lineage.resolve_pending(engine, lineage.mlflow_client(tracking_uri))
            plain[seed] = judge(live, live.key(project, "admin"))
        last = f"stateful-{CASES[-1][0]}"
        admin = live.key(last, "admin")
        configure(last, reference="first")
        first = judge(live, admin)
        configure(last, reference="preceding")
        send(last, CURRENT, seed=9, shift=True)
        shifted = judge(live, admin)
        yield Stateful(live, root, tracking_uri, plain, first, shifted)


@pytest.mark.parametrize("seed", [seed for seed, _ in CASES])
@pytest.mark.parametrize("kind", KINDS)
def test_plain_stateful_traffic_is_judged_none(stateful: Stateful, seed: int, kind: str) -> None:
    found = report(stateful.plain[seed], kind)
    assert found["verdict"] == "none", found["scores"]
    if kind != "input":  # inputs are judged against the training dataset
        assert found["reference"]["source"] == "traffic"
        assert found["reference"]["rows"] == REFERENCE
        # The reference ends where the current window starts.
        assert found["reference"]["end_unix_nano"] == found["current"]["start_unix_nano"]
    assert found["current"]["requests"] == CURRENT


def test_the_versions_first_requests_judge_the_same_traffic_as_drift(stateful: Stateful) -> None:
    found = report(stateful.first, "latent")
    assert found["reference"]["rows"] == REFERENCE
    assert found["verdict"] == "drift", found["scores"]


@pytest.mark.parametrize("kind", KINDS)
def test_shifted_traffic_after_it_is_still_drift(stateful: Stateful, kind: str) -> None:
    found = report(stateful.shifted, kind)
    assert found["verdict"] == "drift", found["scores"]
