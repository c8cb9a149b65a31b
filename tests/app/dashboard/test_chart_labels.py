"""The drift charts in a real browser (Debian's Chromium) say what they plot: p-values and
distances on axes of their own, named with their tests, never a "drift score"; one drift job
draws on a time axis of hours, not years; the legends show the latest values when the
pointer is not over the chart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from app.store import schema
from app.store.engine import create_db_engine, write_transaction
from app.store.tables import DriftReport
from app.tenancy import projects
from tests import otlp
from tests.app.dashboard.browsing import login, screenshot
from tests.conftest import LiveService, embedded_settings, running

PROJECT = "shop"
MODEL = "booking-world-model"  # the world model of `otlp.hybrid_trace`, v3

INPUT = {
    "columns": [
        {"column": "people", "column_type": "numerical", "stattest_name": "K-S p_value",
         "score_type": "p_value", "drift_score": 0.012, "threshold": 0.05, "drifted": True},
        {"column": "room", "column_type": "categorical",
         "stattest_name": "Jensen-Shannon distance", "score_type": "distance",
         "drift_score": 0.21, "threshold": 0.1, "drifted": True},
    ],
    "drifted_columns": ["people", "room"],
    "share_drifted": 1.0,
}  # fmt: skip
LATENT = {"layers": {"encoder": {"p_value": 0.004, "mmd2": 0.031}}}
DECISION = {"tests": [{"name": "chosen action", "adjusted_p": 0.2}]}


@pytest.fixture
def one_job(tmp_path: Path) -> Iterator[tuple[LiveService, str]]:
    """A service whose one world-model version was judged by a single drift job."""
    settings = embedded_settings(tmp_path)
    engine = create_db_engine(settings)
    schema.upgrade(engine)
    try:
        with running(settings, engine) as live:
            ingest, read = live.key(PROJECT, "ingest"), live.key(PROJECT, "read")
            with live.client(ingest) as client:
                client.post(
                    "/v1/traces",
                    content=otlp.request(otlp.hybrid_trace(otlp.Ids(9))).SerializeToString(),
                    headers=otlp.PROTOBUF,
                ).raise_for_status()
            pid = projects.project_id(engine, PROJECT)
            job = str(uuid.uuid4())
            now = datetime.now(UTC)
            with write_transaction(engine) as conn:
                conn.execute(insert(DriftReport), [
                    {"project_id": pid, "model_name": MODEL, "model_version": "3", "kind": kind,
                     "window_start_unix_nano": 1_700_000_000 * 10**9,
                     "window_end_unix_nano": 1_700_000_060 * 10**9,
                     "reference": {"source": "training data", "rows": 500},
                     "scores": {**scores, "requests": 100}, "verdict": "drift",
                     "mlflow_run_id": None, "job_id": job, "created_at": now}
                    for kind, scores in (("input", INPUT), ("latent", LATENT),
                                         ("decision", DECISION))
                ])  # fmt: skip
            yield live, read
    finally:
        engine.dispose()


def test_drift_charts_say_what_they_plot(
    browser: Any, one_job: tuple[LiveService, str], screenshots: Path
) -> None:
    live, read = one_job
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        login(page, live.url, read, then="/ui/drift")
        page.locator(".chart.drawn").nth(2).wait_for()
        charts = page.locator(".chart.drawn")
        assert charts.count() == 3  # inputs, latent layers, decisions
        text = page.locator("main").inner_text()
        assert "drift score" not in text.lower()

        axes = [a.inner_text() for a in page.locator(".chart-axes").all()]
        assert "Left axis: p-value, 0 to 1: drift when low" in axes[0]
        assert "right axis: distance, normed: drift when high" in axes[0]
        assert "right axis: MMD², squared kernel distance" in axes[1]
        assert "Left axis: adjusted p-value" in axes[2]
        legend = page.locator(".chart.drawn").first.locator(".u-legend").inner_text()
        assert "people (K-S p-value)" in legend
        assert "room (Jensen-Shannon distance)" in legend

        # One job: the time axis spans hours around it, not years.
        for i in range(3):
            chart = charts.nth(i)
            low = float(chart.get_attribute("data-x-min") or "nan")
            high = float(chart.get_attribute("data-x-max") or "nan")
            judged = datetime.now(UTC).timestamp()
            assert low < judged - 60 and judged + 60 < high, (low, high)
            assert high - low <= 2 * 86_400, f"a single job drawn over {high - low:.0f} s"

        # Not hovered: each legend shows the latest values, never "--"; so again after the
        # pointer has been over the chart and left it.
        def values(i: int) -> list[str]:
            return [v.inner_text() for v in charts.nth(i).locator(".u-series .u-value").all()]

        for i in range(3):
            assert values(i) and "--" not in values(i), values(i)
        assert "0.012" in values(0) and "0.21" in values(0)
        box = charts.nth(1).locator(".u-over").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.move(5, 5)
        assert "--" not in values(1), values(1)
        screenshot(page, screenshots, "5c-drift-one-job")
    finally:
        context.close()
