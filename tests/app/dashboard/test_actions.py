"""What an admin does through the dashboard, in a real browser: decide a review, run the
deploy gates, start an export and download it, log out."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.app.dashboard.browsing import check_accessibility, login, screenshot, tab_reaches
from tests.app.dashboard.conftest import MODEL, Filled


@pytest.fixture
def page(browser: Any, filled: Filled) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page = context.new_page()
    login(page, filled.url, filled.admin)
    yield page
    context.close()


def test_an_admin_approves_a_review(page: Any, filled: Filled, screenshots: Path) -> None:
    review = filled.reviews[0]
    page.goto(f"{filled.url}/ui/policies")
    row = page.locator(f"#review-{review}")
    row.get_by_label(f"Note on review {review}").fill("checked the calendar by hand")
    row.get_by_role("button", name="Approve").click()
    page.wait_for_url(f"**/ui/policies?decided={review}**")
    assert page.locator(f"#review-{review}").count() == 0  # no longer pending
    decided = page.locator("#decided-reviews tbody tr", has_text="checked the calendar")
    assert "approved" in decided.inner_text()
    assert "key:" in decided.inner_text()
    screenshot(page, screenshots, "6b-review-approved")
    with filled.live.client(filled.read) as client:
        items = client.get("/v1/reviews", params={"status": "approved"}).json()["items"]
    assert [i["id"] for i in items] == [review]


def test_a_promotion_the_gates_refuse_shows_each_verdict(
    page: Any, filled: Filled, screenshots: Path
) -> None:
    page.goto(f"{filled.url}/ui/models")
    form = page.locator("#promote-form")
    form.get_by_label("Model name").fill(MODEL)
    form.get_by_label("Version").fill(filled.refused_version)
    form.get_by_label("Alias").fill("champion")
    form.get_by_role("button", name="Run the deploy gates and promote").click()
    page.wait_for_url("**/ui/models/promote")
    heading = page.locator("#result-h")
    assert "Refused by policy" in heading.inner_text()
    verdicts = page.locator("#verdicts tbody tr", has_text="promotion-metrics")
    assert "deny" in verdicts.inner_text()
    assert "val_conflict_auc" in verdicts.inner_text()  # the reason: the metrics it misses
    moves = page.locator("#moves tbody tr").first
    assert "refused" in moves.inner_text() and "promotion-metrics" in moves.inner_text()
    check_accessibility(page)
    screenshot(page, screenshots, "4b-promotion-refused")
    from mlflow.tracking import MlflowClient

    champion = MlflowClient(filled.tracking_uri).get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == "1"  # the alias did not move


def test_a_promotion_the_gates_allow_moves_the_alias(page: Any, filled: Filled) -> None:
    page.goto(f"{filled.url}/ui/models")
    form = page.locator("#promote-form")
    form.get_by_label("Model name").fill(MODEL)
    form.get_by_label("Version").fill(filled.fit_version)
    form.get_by_label("Alias").fill("staging")
    form.get_by_role("button", name="Run the deploy gates and promote").click()
    page.wait_for_url("**/ui/models/promote")
    assert f"now points at v{filled.fit_version}" in page.locator("#result-h").inner_text()
    assert "allowed" in page.locator("#moves tbody tr").first.inner_text()
    # Nothing earlier passed the gates for `staging`: a rollback says so, and changes nothing.
    form = page.locator("#rollback-form")
    form.get_by_label("Alias").fill("staging")
    form.get_by_role("button", name="Roll back").click()
    assert "nothing to roll back to" in page.locator("#action-error").inner_text()


def test_an_export_runs_and_its_bundle_downloads(
    page: Any, filled: Filled, screenshots: Path, tmp_path: Path
) -> None:
    page.goto(f"{filled.url}/ui/audit")
    assert tab_reaches(page, "#export-button")
    page.get_by_role("button", name="Start export").click()
    page.wait_for_url("**/ui/audit?export=**")
    export_id = page.url.split("export=")[1].split("#")[0]
    row = page.locator(f"#export-{export_id}")
    link = row.get_by_role("link", name="Download bundle")
    link.wait_for(timeout=60_000)  # the status cell follows the job until it is done
    screenshot(page, screenshots, "7b-export-done")
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "bundle.zip"
    download.value.save_as(saved)
    with zipfile.ZipFile(saved) as bundle:
        names = set(bundle.namelist())
    assert {"manifest.json", "manifest.sig"} <= names


def test_logging_out_ends_the_session(page: Any, filled: Filled) -> None:
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/ui/login")
    page.goto(f"{filled.url}/ui/requests")
    assert "/ui/login" in page.url
