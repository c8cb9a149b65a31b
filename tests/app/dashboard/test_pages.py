"""Every page of the dashboard in a real browser, on a service filled by the reference stack:
what it shows, that it is accessible, and a screenshot of each (test-artifacts/screenshots)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.app.dashboard.browsing import check_accessibility, login, screenshot, tab_reaches
from tests.app.dashboard.conftest import BIG_TRACE_SPANS, MODEL, Filled


@pytest.fixture
def page(browser: Any, filled: Filled) -> Iterator[Any]:
    """A fresh browser context logged in with the admin key; any script error fails."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    login(page, filled.url, filled.admin)
    yield page
    context.close()
    assert errors == []


def test_overview_shows_traffic_drift_and_the_last_signed_head(
    page: Any, filled: Filled, screenshots: Path
) -> None:
    page.get_by_label("Time range").select_option("1h")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**/ui/?range=1h")
    total = int(page.locator("#total-requests").inner_text().replace(",", ""))
    assert total >= 350  # 350 demo requests, 2 parked for review, the big trace
    assert page.locator(".chart.drawn canvas").count() == 3  # the charts drew
    versions = page.locator("section", has=page.get_by_role("heading", name="Drift verdict"))
    row = versions.locator("tr", has_text=MODEL)
    assert row.locator(".badge.drift").count() == 1  # the shifted traffic drifted
    ledger = page.locator("section", has=page.get_by_role("heading", name="Audit ledger"))
    assert "size" in ledger.inner_text() and "none yet" not in ledger.inner_text()
    check_accessibility(page)
    assert tab_reaches(page, "nav a[href='/ui/requests']")
    assert tab_reaches(page, "button:has-text('Show')")
    screenshot(page, screenshots, "1-overview")


def test_requests_filter_and_page(page: Any, filled: Filled, screenshots: Path) -> None:
    page.goto(f"{filled.url}/ui/requests")
    rows = page.locator("#requests-table tbody tr")
    assert rows.count() == 50
    assert page.locator("#next-page").count() == 1
    check_accessibility(page)
    assert tab_reaches(page, "button:has-text('Filter')")

    page.get_by_label("Outcome").fill("clarify")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/ui/requests?**outcome=clarify**")
    outcomes = page.locator("#requests-table tbody tr .badge").all_inner_texts()
    assert outcomes and {o for o in outcomes if o != "unset"} == {"clarify"}

    page.goto(f"{filled.url}/ui/requests")
    page.get_by_label("Policy", exact=True).select_option("planner-confidence-floor")
    page.get_by_label("Policy verdict").select_option("require_review")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**policy=planner-confidence-floor**")
    assert page.locator("#requests-table tbody tr").count() == 2  # the two parked ones
    screenshot(page, screenshots, "2-requests-filtered")

    # A drift window: the requests of the shifted job's current window.
    page.goto(f"{filled.url}/ui/requests")
    options = page.locator("#f-drift option").all()
    page.get_by_label("Drift window").select_option(options[1].get_attribute("value"))
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**drift=**")
    assert "in the drift window" in page.locator("main").inner_text()
    assert page.locator("#requests-table tbody tr").count() == 50

    fingerprint = page.locator("#requests-table tbody tr td.mono[title]").first.get_attribute(
        "title"
    )
    page.goto(f"{filled.url}/ui/requests")
    page.get_by_label("Fingerprint").fill(fingerprint or "")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**fingerprint=**")
    shown = page.locator("#requests-table tbody tr td.mono[title]").all()
    assert shown and all(s.get_attribute("title") == fingerprint for s in shown)

    page.goto(f"{filled.url}/ui/requests")
    first = page.locator("#requests-table tbody tr").first.inner_text()
    page.locator("#next-page").click()
    page.wait_for_url("**cursor=**")
    assert page.locator("#requests-table tbody tr").first.inner_text() != first


def test_a_request_in_detail(page: Any, filled: Filled, screenshots: Path) -> None:
    page.goto(f"{filled.url}/ui/requests?outcome=booked")
    page.locator("#requests-table tbody tr a").first.click()
    page.wait_for_url("**/ui/requests/*")
    # The latent trajectory: a chart of summary statistics and one of projections per layer.
    latent = page.locator("section", has=page.get_by_role("heading", name="latent trajectory"))
    assert latent.get_by_role("heading", name="transition").count() == 1
    assert latent.locator(".chart.drawn canvas").count() == 4  # encoder and transition
    # The candidates: 16, the chosen one highlighted, sortable by a header button.
    table = page.locator("table.candidates")
    assert table.locator("tbody tr").count() == 16
    chosen = table.locator("tr.chosen")
    assert chosen.count() == 1
    assert chosen.locator("td").first.inner_text().startswith(page.locator("#chosen").inner_text())
    assert "predicted conflict_probability" in table.locator("thead").inner_text()
    table.get_by_role("button", name="score").click()
    scores = [float(v) for v in table.locator("tbody tr td:nth-child(2)").all_inner_texts()]
    assert scores == sorted(scores)
    table.get_by_role("button", name="score").click()
    scores = [float(v) for v in table.locator("tbody tr td:nth-child(2)").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)
    # Lineage down to the training dataset; the ledger entry with a verified proof.
    lineage = page.locator("ol.lineage-chain").inner_text()
    assert MODEL in lineage and "run" in lineage and "dataset" in lineage
    page.locator("#proof .badge").wait_for()
    assert page.locator("#proof .badge").inner_text() == "verified"
    assert page.locator("table.waterfall tbody tr").count() >= 4
    check_accessibility(page)
    assert tab_reaches(page, "table.candidates button[data-sort]")
    screenshot(page, screenshots, "3-request-detail")


def test_a_request_judged_by_a_policy_lists_every_evaluation(page: Any, filled: Filled) -> None:
    page.goto(f"{filled.url}/ui/requests?policy=planner-confidence-floor")
    page.locator("#requests-table tbody tr a").first.click()
    page.wait_for_url("**/ui/requests/*")
    rows = page.locator("#policy-evaluations tbody tr")
    assert rows.count() == 1
    text = rows.first.inner_text()
    assert "planner-confidence-floor" in text and "require_review" in text
    assert "is below 0.9999" in text  # the policy's message


def test_a_trace_of_50000_spans_opens_collapsed_and_pages(
    page: Any, filled: Filled, screenshots: Path
) -> None:
    started = time.monotonic()
    page.goto(f"{filled.url}/ui/requests/{filled.big_trace}")
    opened = time.monotonic() - started
    assert opened < 10, f"the page took {opened:.1f}s"
    assert f"({BIG_TRACE_SPANS:,})" in page.locator("#spans-h").inner_text()
    rows = page.locator("table.waterfall tbody tr")
    assert rows.count() == 51  # collapsed: the root and its 50 stages
    # The page stays responsive: a script runs at once.
    assert page.evaluate("() => 1 + 1") == 2
    page.get_by_role("link", name="Expand stage 3: 999 spans under it").click()
    page.wait_for_url("**focus=**")
    assert "subtree of span" in page.locator("main").inner_text()
    assert rows.count() == 200  # a page of the stage's 1,000 spans
    page.goto(f"{filled.url}/ui/requests/{filled.big_trace}?levels=all")
    assert rows.count() == 200
    assert "page 1 of 250" in page.locator("nav.pager").first.inner_text()
    page.locator("#next-spans").click()
    page.wait_for_url("**spans=1**")
    assert "page 2 of 250" in page.locator("nav.pager").first.inner_text()
    screenshot(page, screenshots, "3b-request-50000-spans")


def test_models_page_lineage_graph_and_versions(
    page: Any, filled: Filled, screenshots: Path
) -> None:
    page.goto(f"{filled.url}/ui/models")
    graph = page.locator(".lineage svg")
    assert graph.locator("g.node.dataset").count() == 1
    assert graph.locator("g.node.run").count() == 1
    assert graph.locator("g.node.version").count() == 3  # llm, world model, planner
    assert graph.locator("path.edge").count() >= 5
    row = page.locator(f"#{MODEL}-1")
    assert "@champion" in row.inner_text()
    assert row.locator(".badge.drift").count() >= 1  # its drift history
    check_accessibility(page)
    assert tab_reaches(page, "#promote-button")
    assert tab_reaches(page, "#rollback-button")
    screenshot(page, screenshots, "4-models")


def test_drift_page_charts_and_the_evidently_report(
    page: Any, filled: Filled, screenshots: Path
) -> None:
    page.goto(f"{filled.url}/ui/drift")
    assert page.locator(".chart.drawn canvas").count() == 3  # inputs, latent, decisions
    jobs = page.locator("table.drift-jobs tbody tr")
    assert jobs.count() == 2
    assert jobs.first.locator(".badge.drift").count() >= 2
    check_accessibility(page)
    jobs.first.get_by_role("link", name="Evidently report").click()
    page.wait_for_url("**report=**")
    frame = page.frame_locator("iframe.report")
    frame.get_by_text("Dataset Drift", exact=True).first.wait_for(timeout=30_000)
    assert page.locator("iframe.report").get_attribute("sandbox") == "allow-scripts"
    screenshot(page, screenshots, "5-drift")


def test_policies_page_set_hashes_and_review_queue(
    page: Any, filled: Filled, screenshots: Path
) -> None:
    page.goto(f"{filled.url}/ui/policies")
    rows = page.locator("#policy-set tbody tr")
    assert rows.count() == 10  # the built-in set
    floor = page.locator("#policy-planner-confidence-floor")
    assert floor.locator("td.mono").get_attribute("title")  # its hash
    assert "require_review 2" in floor.inner_text()
    assert page.locator("#pending-reviews tbody tr").count() >= 1
    check_accessibility(page)
    assert tab_reaches(page, "#pending-reviews button:has-text('Approve')")
    screenshot(page, screenshots, "6-policies")


def test_audit_page_verifies_the_ledger(page: Any, filled: Filled, screenshots: Path) -> None:
    page.goto(f"{filled.url}/ui/audit")
    size = int(page.locator("#ledger-size").inner_text().replace(",", ""))
    assert size >= 350  # a `request` event per request, and the governance events
    check_accessibility(page)
    assert tab_reaches(page, "#verify-button")
    page.locator("#verify-button").click()
    result = page.locator("#verify-result")
    assert "verified" in result.inner_text()
    assert "every hash, link, root and signature checks out" in result.inner_text()
    screenshot(page, screenshots, "7-audit")
