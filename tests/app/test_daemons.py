"""Background jobs: one `PeriodicWorker` base, and each job led by exactly one process of the
deployment — two workers on one SQLite file, two sessions on one PostgreSQL database, and two
`warden serve` processes with different data folders on one PostgreSQL, the leader killed."""

from __future__ import annotations

import doctest
import gc
import os
import signal
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, create_engine, text
from starlette.testclient import TestClient

from app.audit import heads
from app.config import Settings
from app.daemons import Leadership, PeriodicWorker
from app.drift import settings as drift_settings
from app.main import create_app
from app.metrics import Metrics
from app.store import leadership
from app.store.engine import create_db_engine
from app.tenancy import projects
from tests.conftest import TEST_SECRET, warden_serve

POSTGRES_ONLY = [pytest.param("postgresql", marks=pytest.mark.postgres)]
# The periodic jobs that keep the database, led once per deployment.
JOBS = (
    "audit-checkpoints", "drift-schedule", "lineage", "dashboard-rollups", "experiments",
    "exports",
)  # fmt: skip


def until(condition: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


class Watched:
    """A real leadership that keeps the answers its `hold()` gave."""

    def __init__(self, inner: Leadership) -> None:
        self.inner = inner
        self.answers: list[bool] = []

    def hold(self) -> bool:
        answer = self.inner.hold()
        self.answers.append(answer)
        return answer

    def release(self) -> None:
        self.inner.release()


class Counting(PeriodicWorker):
    """Counts its rounds; `failures` rounds raise first."""

    def __init__(
        self, name: str, interval: float, lead: Leadership, metrics: Metrics | None = None,
        failures: int = 0,
    ) -> None:  # fmt: skip
        super().__init__(name, interval, lead, metrics)
        self.ticks = 0
        self.failures = failures

    def tick(self) -> None:
        self.ticks += 1
        if self.failures:
            self.failures -= 1
            raise RuntimeError("a round that fails")


def watched(worker: PeriodicWorker) -> Watched:
    assert isinstance(worker.leadership, Watched)
    return worker.leadership


def test_a_failing_round_is_counted_and_the_worker_goes_on() -> None:
    metrics = Metrics()
    lead = leadership.for_engine(create_engine("sqlite://"), "sweep")
    assert isinstance(lead, leadership.SoleLeadership)  # in memory: its process leads
    worker = Counting("sweep", 0.02, lead, metrics, failures=2)
    worker.start()
    try:
        until(lambda: worker.ticks >= 4, "rounds after the failing ones")
        assert worker.leading
        sample = metrics.registry.get_sample_value
        assert sample("warden_daemon_leader", {"daemon": "sweep"}) == 1
        assert sample("warden_daemon_failures_total", {"daemon": "sweep"}) == 2
        assert sample("warden_daemon_ticks_total", {"daemon": "sweep"}) >= 4
    finally:
        worker.stop()
    assert not worker.running and not worker.leading
    assert metrics.registry.get_sample_value("warden_daemon_leader", {"daemon": "sweep"}) == 0


def test_stop_wakes_a_sleeping_worker_and_a_wake_runs_a_round_now() -> None:
    worker = Counting("sweep", 3600, leadership.SoleLeadership())
    worker.stop()  # never started: nothing to stop
    worker = Counting("sweep", 3600, leadership.SoleLeadership())
    worker.start()
    until(lambda: worker.leading, "the lead, taken at start")
    worker.wake()
    until(lambda: worker.ticks == 1, "the round a wake-up asks for")
    worker.stop(timeout=60)
    assert not worker.running and worker.ticks == 1


def test_the_advisory_key_is_stable_and_per_job() -> None:
    result = doctest.testmod(leadership)
    assert result.attempted > 0 and result.failed == 0
    # Every process and every release derives the same key (Python's `hash` is salted):
    # processes of two releases, mid-upgrade, still agree on one leader.
    assert leadership.advisory_key("lineage") == -3111782258333525635
    assert leadership.advisory_key("audit-checkpoints") == -8071956767571977312


def test_one_of_two_workers_on_one_sqlite_file_leads_and_the_other_takes_over(
    tmp_path: Path,
) -> None:
    database = tmp_path / "db" / "warden.db"
    settings = Settings(
        data_dir=tmp_path / "data", database_url=f"sqlite:///{database}", secret_key=TEST_SECRET
    )
    engine = create_db_engine(settings)
    first = Counting("sweep", 0.02, Watched(leadership.for_engine(engine, "sweep")))
    second = Counting("sweep", 0.02, Watched(leadership.for_engine(engine, "sweep")))
    try:
        first.start()
        until(lambda: first.ticks >= 2, "the first worker's rounds")
        second.start()
        until(lambda: len(watched(second).answers) >= 5, "the second worker's attempts")
        assert first.leading and not second.leading
        assert second.ticks == 0 and not any(watched(second).answers)
        # One lock per database, beside it; none in the data folder.
        assert (database.parent / "warden.db.sweep.leader").exists()
        assert not (tmp_path / "data").exists()

        first.stop()  # gives the lead up
        assert not first.running and not first.leading
        held = first.ticks
        until(lambda: second.ticks >= 2, "the second worker's rounds, as the new leader")
        assert second.leading and first.ticks == held
    finally:
        first.stop()
        second.stop()
        engine.dispose()


def _holder(engine: Engine, job: str) -> int | None:
    """The backend pid holding the job's advisory lock, as pg_locks shows it."""
    key = leadership.advisory_key(job) & 0xFFFF_FFFF_FFFF_FFFF
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = CAST(CAST(:high AS bigint) AS oid)"
                " AND objid = CAST(CAST(:low AS bigint) AS oid) AND objsubid = 1"
            ),
            {"high": key >> 32, "low": key & 0xFFFF_FFFF},
        ).scalar()
        # pg_locks names the lock pg_try_advisory_lock takes: this session cannot take it.
        assert found is None or not conn.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": leadership.advisory_key(job)}
        ).scalar()
    return None if found is None else int(found)


@pytest.mark.parametrize("database_url", POSTGRES_ONLY, indirect=True)
def test_a_leader_that_loses_its_session_gives_up_and_another_takes_over(engine: Engine) -> None:
    # The first worker's rounds come only when woken, so each of its steps is observed.
    first = Counting("sweep", 3600, Watched(leadership.for_engine(engine, "sweep")))
    second = Counting("sweep", 0.02, Watched(leadership.for_engine(engine, "sweep")))
    try:
        first.start()
        until(lambda: first.leading, "the first worker's lead, taken at start")
        first.wake()
        until(lambda: first.ticks == 1, "the first worker's round")
        second.start()
        until(lambda: len(watched(second).answers) >= 5, "the second worker's attempts")
        assert second.ticks == 0 and not second.leading

        session = _holder(engine, "sweep")
        assert session is not None
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": session})
        until(lambda: second.ticks >= 1, "the second worker's round once the session ended")
        assert second.leading and _holder(engine, "sweep") not in (None, session)

        # The first has not looked since: its next round finds the session gone, gives up.
        assert first.leading
        first.wake()
        until(lambda: len(watched(first).answers) == 3, "the first worker's check")
        assert watched(first).answers[-1] is False and not first.leading and first.ticks == 1
        first.wake()  # it asks again, on a fresh session: the second leads now
        until(lambda: len(watched(first).answers) == 4, "the first worker's attempt")
        assert watched(first).answers[-1] is False and first.ticks == 1

        second.stop()
        assert _holder(engine, "sweep") is None
        first.wake()
        until(lambda: first.ticks == 2, "the first worker's round as leader again")
        assert first.leading
    finally:
        first.stop()
        second.stop()
    assert _holder(engine, "sweep") is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_embedded_app_leaves_the_process_garbage_collector_alone(settings: Settings) -> None:
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_threshold() == threshold and gc.get_freeze_count() == frozen


def _daemons(url: str) -> tuple[dict[str, float], dict[str, float]]:
    """(leader gauge, ticks counter) by daemon, from the process's /metrics."""
    answer = httpx.get(f"{url}/metrics", timeout=30).raise_for_status()
    leader: dict[str, float] = {}
    ticks: dict[str, float] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == "warden_daemon_leader":
                leader[sample.labels["daemon"]] = sample.value
            elif sample.name == "warden_daemon_ticks_total":
                ticks[sample.labels["daemon"]] = sample.value
    return leader, ticks


@pytest.mark.parametrize("database_url", POSTGRES_ONLY, indirect=True)
def test_two_served_processes_run_each_job_once_and_the_survivor_takes_every_job_over(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    # The scheduler's rounds check which projects are due; with none due they stay light.
    pid = projects.create_project(engine, projects.DEFAULT_PROJECT)
    drift_settings.update_settings(engine, pid, {"interval_seconds": 0})
    key_file = tmp_path / "audit-signing.key"
    heads.save_private_key(heads.generate_key(), key_file)
    env = {
        "WARDEN_AUDIT_SIGNING_KEY": str(key_file),
        "WARDEN_LINEAGE_INTERVAL": "0.3",
        "WARDEN_DRIFT_TICK": "0.3",
        "WARDEN_AUDIT_CHECKPOINT_INTERVAL": "0.3",
        "WARDEN_DASHBOARD_ROLLUP_INTERVAL": "0.3",
        "WARDEN_EXPERIMENT_RESULTS_INTERVAL": "0.3",
    }
    roots = [tmp_path / "one", tmp_path / "two"]
    for root in roots:
        root.mkdir()
    with (
        warden_serve(roots[0], database_url, first_run=False, env=env) as one,
        warden_serve(roots[1], database_url, first_run=False, env=env) as two,
    ):
        served = {"one": one, "two": two}
        assert one.proc.poll() is None and two.proc.poll() is None

        def settled() -> bool:
            leaders = {name: _daemons(s.url)[0] for name, s in served.items()}
            return all(sorted(v.get(job) for v in leaders.values()) == [0, 1] for job in JOBS)

        until(settled, "one leader per job")
        before = {name: _daemons(s.url) for name, s in served.items()}
        leader_of = {
            job: next(name for name in served if before[name][0][job] == 1) for job in JOBS
        }

        def grown(name: str, jobs: list[str], since: dict[str, float], rounds: int) -> bool:
            ticks = _daemons(served[name].url)[1]
            return all(ticks[job] >= since[job] + rounds for job in jobs)

        for name in served:
            mine = [job for job in JOBS if leader_of[job] == name]
            until(partial(grown, name, mine, before[name][1], 3), f"{name}'s rounds")
        after = {name: _daemons(s.url) for name, s in served.items()}
        for job in JOBS:
            follower = next(name for name in served if name != leader_of[job])
            # Only the leader's rounds ran, and the lead did not move meanwhile.
            assert after[follower][1][job] == 0, (job, after)
            assert after[leader_of[job]][0][job] == 1 and after[follower][0][job] == 0

        victim = leader_of["audit-checkpoints"]
        survivor = next(name for name in served if name != victim)
        os.killpg(served[victim].proc.pid, signal.SIGKILL)
        served[victim].proc.wait()
        at_kill = _daemons(served[survivor].url)[1]

        def took_over() -> bool:
            leader, ticks = _daemons(served[survivor].url)
            return all(leader[job] == 1 and ticks[job] >= at_kill[job] + 3 for job in JOBS)

        until(took_over, f"{survivor} leading and running every job")
        assert served[survivor].proc.poll() is None
