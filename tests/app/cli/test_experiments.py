"""`warden experiment` as a real process: create, list, show and stop, and one-line errors;
`show` with the results, in this process."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from typer.testing import CliRunner

from app.config import Settings
from app.experiments import configs
from app.tenancy import projects
from tests.app.cli.in_process import run
from tests.app.cli.warden_process import warden
from tests.app.experiments import traffic
from tests.app.experiments.test_results import ab_test
from tests.app.experiments.traffic import SECOND, T0, Req
from tests.conftest import TEST_SECRET

ARMS = (
    "--arm", "control=models:/booking-world-model/1",
    "--arm", "v2=models:/booking-world-model@challenger:3",
)  # fmt: skip


def test_create_list_show_stop(tmp_path: Path, database_url: str) -> None:
    assert warden(tmp_path, database_url, "project", "create", "shop").returncode == 0
    created = warden(
        tmp_path, database_url, "experiment", "create", "wm-v2", "--project", "shop",
        "--stage", "world_model", *ARMS, "--shadow", "v3=models:/booking-world-model/3:0.25",
        "--unit", "request", "--guardrail", "deny_rate", "--guardrail", "latency_p95_ms",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert "created experiment wm-v2 on world_model" in created.stdout

    engine = create_engine(database_url)
    try:
        stored = configs.get(engine, projects.project_id(engine, "shop"), "wm-v2")
    finally:
        engine.dispose()
    assert [(a.name, a.model, a.weight) for a in stored.arms] == [
        ("control", "models:/booking-world-model/1", 1.0),
        ("v2", "models:/booking-world-model@challenger", 3.0),
    ]
    assert [(s.name, s.sample_rate) for s in stored.shadows] == [("v3", 0.25)]
    assert (stored.unit, stored.guardrails) == ("request", ["deny_rate", "latency_p95_ms"])
    assert stored.created_by is not None and stored.created_by.startswith("cli:")

    second = warden(
        tmp_path, database_url, "experiment", "create", "wm-v3", "--project", "shop",
        "--stage", "world_model", *ARMS,
    )  # fmt: skip
    assert second.returncode == 1
    assert second.stderr.strip() == (
        "error: experiment 'wm-v2' is running on stage world_model already: stop it first "
        "(warden experiment stop wm-v2)"
    )

    listed = warden(tmp_path, database_url, "experiment", "list", "--project", "shop")
    assert listed.returncode == 0 and "wm-v2" in listed.stdout and "running" in listed.stdout
    shown = warden(tmp_path, database_url, "experiment", "show", "wm-v2", "--project", "shop")
    assert shown.returncode == 0, shown.stderr
    assert "control (control)" in shown.stdout and "v3 (shadow)" in shown.stdout
    assert "primary KPI plan_success_rate; guardrails deny_rate, latency_p95_ms" in shown.stdout

    stopped = warden(tmp_path, database_url, "experiment", "stop", "wm-v2", "--project", "shop")
    assert stopped.returncode == 0 and "stopped experiment wm-v2" in stopped.stdout
    again = warden(tmp_path, database_url, "experiment", "stop", "wm-v2", "--project", "shop")
    assert again.returncode == 1 and "stopped already" in again.stderr
    assert "stopped" in warden(
        tmp_path, database_url, "experiment", "show", "wm-v2", "--project", "shop"
    ).stdout


def test_bad_input_is_one_line_and_a_failure(tmp_path: Path, database_url: str) -> None:
    assert warden(tmp_path, database_url, "project", "create", "shop").returncode == 0
    for args, message in [
        (("--arm", "control", "--arm", "v2=models:/m/2"),
         "error: --arm 'control': write NAME=MODEL[:WEIGHT]"),
        (("--arm", "a=models:/m/1", "--arm", "b=models:/m/2:0"),
         "error: arms[1].weight: must be a number above 0"),
        (("--arm", "a=models:/m/1", "--arm", "b=m/2"),
         "error: arms[1].model: 'm/2' is not a model reference"),
        (("--arm", "a=models:/m/1", "--arm", "b=models:/m/2", "--primary", "clicks"),
         "error: primary_kpi: 'clicks' is not a KPI"),
    ]:  # fmt: skip
        result = warden(
            tmp_path, database_url, "experiment", "create", "x", "--project", "shop",
            "--stage", "planner", *args,
        )  # fmt: skip
        assert result.returncode == 1, result.stdout
        assert result.stderr.startswith(message), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    missing = warden(tmp_path, database_url, "experiment", "show", "nope", "--project", "shop")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: no experiment 'nope' in this project"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_show_prints_the_results(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDEN_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("WARDEN_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("WARDEN_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("COLUMNS", "200")
    cli = CliRunner()
    pid = traffic.project(engine, "shop")
    traffic.experiment(
        engine, pid, "wm-shadow", [("champion", f"models:/{traffic.WORLD_MODEL}/1", 1.0)],
        shadows=[("v2", f"models:/{traffic.WORLD_MODEL}/2")],
    )  # fmt: skip
    before = run(cli, "experiment", "show", "wm-shadow", "--project", "shop")
    assert "no results yet: no request was assigned to an arm" in before
    ab_test(engine, pid)
    shown = run(cli, "experiment", "show", "wm-ab", "--project", "shop")
    lines = [" ".join(line.replace("│", " ").split()) for line in shown.splitlines()]
    # Per arm: n, the primary KPI, the difference in points with its interval, the verdict.
    assert "control (control) 60 90.0% - -" in lines
    (challenger,) = [line for line in lines if line.startswith("challenger 60 20.0% -70.0 pp [")]
    assert challenger.endswith("] worse")
    assert "guardrails (latency_p95_ms, deny_rate) breached: challenger: latency_p95_ms" in lines
    assert (
        "sample ratio: control 60, challenger 60 (expected 60, 60), p = 1: ok" in lines
    ), shown

    # A shadow arm's agreement with the live decisions.
    starts = [T0 + i * SECOND for i in range(4)]
    traces = traffic.ingest(engine, pid, [Req(start=s) for s in starts], seed=31)
    traffic.assign(engine, pid, "wm-shadow", "champion", traces, starts)
    for i, trace in enumerate(traces):
        chosen = "room-a@15:00" if i else "room-b@16:00"
        traffic.shadow(engine, pid, "wm-shadow", "v2", trace, chosen, T0 + i * SECOND + 5)
    shadowed = run(cli, "experiment", "show", "wm-shadow", "--project", "shop", "--refresh")
    assert (
        "shadow v2: 4 runs, 4 compared with the live decision, agreement 75.0% "
        "(1 disagreements listed)"
    ) in shadowed
