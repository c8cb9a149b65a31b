"""A request made of plain OpenTelemetry GenAI spans (the official SDK, no Warden SDK) seen in
a real browser: its language-model call with prompt, completion, finish reason, tokens and
cost, its retrieved documents, and the version's usage on the Models page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.app.dashboard.browsing import check_accessibility, login
from tests.app.ingest.test_genai_spans import (
    ANSWERED,
    ASKED,
    COMPLETION,
    DOCUMENTS,
    PROMPT,
    otel_tracer,
    price_the_model,
    rag_request,
)
from tests.conftest import LiveService


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield page
    context.close()
    assert errors == []


def test_the_request_page_shows_the_call_and_the_documents(live: LiveService, page: Any) -> None:
    key = live.key("rag", "ingest", "read")
    price_the_model(live, "rag")
    with otel_tracer(live, key, batched=False) as tracer:
        trace_id = rag_request(tracer)

    login(page, live.url, key, then=f"/ui/requests/{trace_id}")
    llm = page.locator("section", has=page.get_by_role("heading", name="Language model"))
    call = llm.locator("article.llm-call")
    assert call.count() == 1
    assert call.locator("ol.prompt li").inner_text().endswith(PROMPT)
    assert COMPLETION in call.locator("ol.completion li").inner_text()
    assert call.locator(".finish-reason").all_inner_texts() == ["stop"]
    assert page.locator("#input-tokens").inner_text() == "1,200"
    assert page.locator("#output-tokens").inner_text() == "300"
    assert page.locator("#llm-cost").inner_text() == "0.36"
    facts = page.locator("section", has=page.get_by_role("heading", name="What came in"))
    assert f"{ASKED} v{ANSWERED}" in facts.inner_text()
    rows = page.locator("#retrievals tbody tr")
    assert rows.count() == len(DOCUMENTS)
    first = rows.first.locator("td").all_inner_texts()
    assert first == ["rooms-faq", "1", "faq-rooms-12", "4", "sha256:9f2c41", "0.83"]
    check_accessibility(page)

    page.goto(f"{live.url}/ui/models")
    usage = page.locator(f'[id="usage-{ASKED}-{ANSWERED}"] td').all_inner_texts()
    assert usage == [f"{ASKED} v{ANSWERED}", "llm", "1", "1,200", "300", "0.36"]
