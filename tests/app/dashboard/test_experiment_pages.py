"""The experiment pages, the KPIs per version on Models and the Overview, and a request's
scores and shadow runs, in a real browser on the live service: what they show, that they are
accessible, and screenshots (test-artifacts/screenshots).

The experiments live in their own project (`lab`) of the `filled` service, so the reference
stack's pages and their counts stay as the other tests expect them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.app.dashboard import experiment_data
from tests.app.dashboard.browsing import UiClient, check_accessibility, login, screenshot
from tests.app.dashboard.conftest import Filled
from tests.app.dashboard.experiment_data import MODEL, PROJECT, SHADOW_CHOICE, Lab


@dataclass(frozen=True)
class LabService:
    url: str
    admin: str
    read: str
    lab: Lab


@pytest.fixture(scope="module")
def lab(filled: Filled) -> LabService:
    live = filled.live
    admin, read = live.key(PROJECT, "admin"), live.key(PROJECT, "read")
    return LabService(live.url, admin, read, experiment_data.build(live.engine))


@pytest.fixture
def page(browser: Any, lab: LabService) -> Iterator[Any]:
    """A fresh browser context logged in to the lab project; any script error fails."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    login(page, lab.url, lab.admin)
    yield page
    context.close()
    assert errors == []


def test_the_experiments_list(page: Any, lab: LabService, screenshots: Path) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Experiments").click()
    page.wait_for_url("**/ui/experiments")
    rows = page.locator("#experiments tbody tr")
    assert rows.count() == 3
    ab = page.locator("#experiment-wm-ab")
    assert ab.locator(".badge.worse").inner_text() == "challenger: worse"
    assert "plan_success_rate" in ab.inner_text()
    assert "stopped" in page.locator("#experiment-wm-srm").inner_text()
    check_accessibility(page)
    screenshot(page, screenshots, "9-experiments")
    ab.get_by_role("link", name="wm-ab").click()
    page.wait_for_url("**/ui/experiments/wm-ab")
    assert page.get_by_role("heading", level=1).inner_text() == "Experiment wm-ab"


def test_an_ab_experiment_side_by_side_with_its_curves(
    page: Any, lab: LabService, screenshots: Path
) -> None:
    page.goto(f"{lab.url}/ui/experiments/wm-ab")
    assert page.locator("#srm-warning").count() == 0
    assert page.locator("#verdict-challenger").inner_text() == "worse"
    assert "latency_p95_ms" in page.locator("#breached-challenger").inner_text()
    primary = page.locator("#kpi-plan_success_rate")
    assert "primary" in primary.inner_text()
    cells = primary.locator("td")
    assert cells.nth(0).inner_text().strip() == "90.0%"
    treated = cells.nth(1)
    assert "20.0%" in treated.inner_text() and "\u221270.0 pp" in treated.inner_text()
    assert "cmp worse" in (treated.get_attribute("class") or "")
    # Coloured as its verdict says.
    background = treated.evaluate("el => getComputedStyle(el).backgroundColor")
    assert background == "rgb(254, 242, 242)"
    # The curves: SVG drawn on the server, the difference with its interval band.
    curve = page.locator("#curve-plan_success_rate-difference svg")
    assert curve.get_attribute("role") == "img"
    title = curve.locator("title").first.text_content() or ""
    assert title.startswith("plan_success_rate: difference")
    band = curve.locator("path.band")
    assert band.count() == 1 and (band.get_attribute("d") or "").endswith("Z")
    assert band.bounding_box()["height"] > 5
    assert curve.locator("path.line").count() == 1 and curve.locator("line.zero").count() == 1
    assert page.locator("#curve-plan_success_rate-mean path.line").count() == 2
    check_accessibility(page)
    screenshot(page, screenshots, "8-experiment")


def test_a_biased_split_warns_that_the_verdicts_are_invalid(
    page: Any, lab: LabService, screenshots: Path
) -> None:
    page.goto(f"{lab.url}/ui/experiments/wm-srm")
    warning = page.get_by_role("alert")
    assert warning.count() == 1
    text = warning.inner_text()
    assert "Sample ratio mismatch: the verdicts are invalid" in text
    assert "a 100 observed, 60.0 expected" in text and "b 20 observed, 60.0 expected" in text
    assert page.locator("#verdict-b").inner_text() == "invalid: SRM"
    check_accessibility(page)
    screenshot(page, screenshots, "8b-experiment-srm")


def test_shadow_disagreements_link_to_the_request(
    page: Any, lab: LabService, screenshots: Path
) -> None:
    page.goto(f"{lab.url}/ui/experiments/wm-shadow")
    assert page.locator("#agreement-v9").inner_text() == "87.5%"
    table = page.locator("#disagreements-v9")
    assert table.locator("tbody tr").count() == len(lab.lab.disagreeing)
    check_accessibility(page)
    screenshot(page, screenshots, "8c-experiment-shadow")
    first = table.locator("tbody tr").first
    request_id = first.locator("td").first.inner_text()
    assert request_id in lab.lab.disagreeing
    first.get_by_role("link", name=request_id, exact=True).click()
    page.wait_for_url(f"**/ui/requests/{request_id}")
    run = page.locator("#shadow-runs tbody tr")
    assert run.count() == 1
    assert SHADOW_CHOICE in run.inner_text() and "disagrees" in run.inner_text()
    # The shadow run's own link lands on its row of the request's page.
    page.go_back()
    shadow_link = page.locator("#disagreements-v9 tbody tr").first.locator("td").nth(3)
    shadow_link.get_by_role("link").click()
    page.wait_for_url(f"**/ui/requests/{request_id}#shadow-*")
    assert page.locator(page.url[page.url.index("#"):]).is_visible()


def test_a_request_shows_its_scores(page: Any, lab: LabService, screenshots: Path) -> None:
    page.goto(f"{lab.url}/ui/requests/{lab.lab.scored}")
    scores = page.locator("#scores tbody tr")
    assert scores.count() == 2
    assert "action=room-b@16:00" in scores.first.inner_text()
    assert "user" in scores.nth(1).inner_text()
    check_accessibility(page)
    screenshot(page, screenshots, "3c-request-scores")


def test_models_and_overview_show_kpis_per_version(
    page: Any, lab: LabService, screenshots: Path
) -> None:
    page.goto(f"{lab.url}/ui/models")
    v1, v2 = page.locator(f"#kpis-{MODEL}-1"), page.locator(f"#kpis-{MODEL}-2")
    assert v1.locator("[data-kpi=plan_success_rate]").inner_text() == "90.0%"
    assert v2.locator("[data-kpi=plan_success_rate]").inner_text() == "20.0%"
    assert v2.locator("[data-kpi=correction_rate]").inner_text() == "1.2%"
    assert "ms" in v2.locator("[data-kpi=latency_p95_ms]").inner_text()
    assert "of " in v1.locator("[data-kpi=ood_rate]").inner_text()  # scored requests
    moves = page.locator("#model-deployments tbody tr")
    assert [c.strip() for c in moves.first.locator("td").all_inner_texts()] == ["2", "1", "1"]
    check_accessibility(page)
    page.locator("#kpis-h").scroll_into_view_if_needed()
    screenshot(page, screenshots, "4c-models-kpis")

    page.goto(f"{lab.url}/ui/")
    panel = page.locator("#overview-kpis")
    assert "20.0%" in panel.inner_text() and "90.0%" in panel.inner_text()
    running = page.locator("#running-experiments li")
    assert running.count() == 2
    assert "challenger: worse" in page.locator("#running-experiments").inner_text()
    check_accessibility(page)
    screenshot(page, screenshots, "1b-overview-experiments")


def test_experiment_pages_over_http(lab: LabService) -> None:
    reader = UiClient(lab.url, lab.read)
    try:
        listed = reader.get("/ui/experiments")
        assert listed.status_code == 200 and "wm-ab" in listed.text
        shown = reader.get("/ui/experiments/wm-ab")
        assert shown.status_code == 200 and 'class="band"' in shown.text
        assert shown.headers["Content-Security-Policy"].startswith("default-src 'self'")
        missing = reader.get("/ui/experiments/no-such")
        assert missing.status_code == 404 and "no experiment" in missing.text
    finally:
        reader.close()
    anonymous = UiClient(lab.url)
    try:
        assert anonymous.get("/ui/experiments/wm-ab").status_code == 303  # to the login form
    finally:
        anonymous.close()
