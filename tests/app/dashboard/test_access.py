"""Who may see and do what: the login, the session cookie, CSRF, and the scopes: `audit`
sees everything and changes nothing, through the UI and through the form endpoints."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.tenancy import projects
from tests.app.dashboard.browsing import UiClient, login
from tests.app.dashboard.conftest import MODEL, PROJECT, Filled

PAGES = ["/ui/", "/ui/requests", "/ui/models", "/ui/drift", "/ui/policies", "/ui/audit"]


@pytest.fixture
def auditor(filled: Filled) -> Iterator[UiClient]:
    client = UiClient(filled.url, filled.audit)
    yield client
    client.close()


@pytest.fixture
def admin(filled: Filled) -> Iterator[UiClient]:
    client = UiClient(filled.url, filled.admin)
    yield client
    client.close()


def _actions(filled: Filled) -> list[tuple[str, dict[str, str]]]:
    review = filled.reviews[-1]
    return [
        ("/ui/models/promote", {"model": MODEL, "version": "1", "alias": "audit-test"}),
        ("/ui/models/rollback", {"model": MODEL, "alias": "champion"}),
        (f"/ui/reviews/{review}/approve", {"note": ""}),
        (f"/ui/reviews/{review}/reject", {"note": ""}),
        ("/ui/audit/exports", {}),
        ("/ui/audit/heads", {}),
    ]


def test_pages_need_a_session(filled: Filled) -> None:
    with httpx.Client(base_url=filled.url, timeout=30) as client:
        for path in PAGES:
            answer = client.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/ui/login?next=")
        assert client.post("/ui/models/promote", data={"model": MODEL}).status_code == 401
        # The login form takes the key; a wrong one is refused with the reason.
        form = client.get("/ui/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token
        wrong = client.post("/ui/login", data={"key": "wdn_nope", "csrf_token": token[1]})
        assert wrong.status_code == 401 and "invalid API key" in wrong.text


def test_an_ingest_key_cannot_log_in(filled: Filled) -> None:
    with pytest.raises(AssertionError):
        UiClient(filled.url, filled.ingest)


def test_the_session_cookie_is_httponly_strict_signed_and_expires(filled: Filled) -> None:
    with httpx.Client(base_url=filled.url, timeout=30) as client:
        form = client.get("/ui/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token
        answer = client.post("/ui/login", data={"key": filled.audit, "csrf_token": token[1]})
        assert answer.status_code == 303
        cookie = next(
            c for c in answer.headers.get_list("set-cookie") if c.startswith("warden_session=")
        )
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/ui"} <= flags
        assert any(f.startswith("max-age=") for f in flags)
        assert "secure" not in flags  # served over http here; over https it is Secure
        value = cookie.split(";")[0].split("=", 1)[1]
        assert filled.audit not in value  # the key itself never goes into the cookie
        assert client.get("/ui/requests").status_code == 200
        # A forged payload (another project, same signature) is no session at all.
        body, mac = value.strip('"').split(".")
        forged = (
            base64.urlsafe_b64encode(
                base64.urlsafe_b64decode(body + "==").replace(b'"p":1', b'"p":2')
            )
            .rstrip(b"=")
            .decode()
        )
        client.cookies.set("warden_session", f"{forged}.{mac}", path="/ui")
        assert client.get("/ui/requests").status_code == 303


def test_the_login_form_refuses_a_post_without_its_token(filled: Filled) -> None:
    with httpx.Client(base_url=filled.url, timeout=30) as client:
        answer = client.post("/ui/login", data={"key": filled.admin})
        assert answer.status_code == 403
        assert "warden_session" not in answer.headers.get("set-cookie", "")


def test_a_post_without_the_csrf_token_is_refused(filled: Filled, admin: UiClient) -> None:
    for path, data in _actions(filled):
        answer = admin.post(path, data, csrf=False)
        assert answer.status_code == 403, path
        assert "CSRF" in answer.text
        wrong = admin.http.post(path, data={**data, "csrf_token": "x" * 43})
        assert wrong.status_code == 403, path
    # Nothing happened: the review is still pending, no alias moved, no export started.
    assert admin.get("/ui/policies").text.count(f'id="review-{filled.reviews[-1]}"') == 1


def test_the_audit_scope_sees_every_page(filled: Filled, auditor: UiClient) -> None:
    for path in PAGES:
        assert auditor.get(path).status_code == 200, path


def test_the_audit_scope_cannot_act_through_the_form_endpoints(
    filled: Filled, auditor: UiClient
) -> None:
    for path, data in _actions(filled):
        answer = auditor.post(path, data)
        assert answer.status_code == 403, (path, answer.text[:300])
        assert "admin" in answer.text
    # ... and reading stays allowed: verifying the ledger changes nothing.
    assert auditor.post("/ui/audit/verify").status_code == 200
    pending = auditor.get("/ui/policies").text
    assert f'id="review-{filled.reviews[-1]}"' in pending


def test_the_audit_scope_sees_no_enabled_action_in_the_browser(
    browser: Any, filled: Filled
) -> None:
    context = browser.new_context()
    page = context.new_page()
    login(page, filled.url, filled.audit)
    assert "audit (read-only)" in page.locator("header").inner_text()
    for path, forms in [
        ("/ui/models", ["form[action='/ui/models/promote']", "form[action='/ui/models/rollback']"]),
        ("/ui/policies", ["form[action^='/ui/reviews/']"]),
        ("/ui/audit", ["form[action='/ui/audit/exports']", "form[action='/ui/audit/heads']"]),
    ]:
        page.goto(f"{filled.url}{path}")
        assert page.locator("#read-only-note").count() == 1, path
        for selector in forms:
            submits = page.locator(f"{selector} button")
            assert submits.count() >= 1, selector
            for i in range(submits.count()):
                assert submits.nth(i).is_disabled(), f"{path}: {selector}"
    # The one button it may press: verify.
    page.goto(f"{filled.url}/ui/audit")
    assert page.locator("#verify-button").is_enabled()
    context.close()


def test_the_audit_scope_cannot_act_through_the_api_either(filled: Filled) -> None:
    """The endpoints behind the dashboard's actions refuse an `audit` key just the same."""
    with filled.live.client(filled.audit) as client:
        for path, body in (
            ("/v1/exports", {}),
            (f"/v1/reviews/{filled.reviews[-1]}/approve", {}),
            (f"/v1/reviews/{filled.reviews[-1]}/reject", {}),
            ("/v1/models/booking-world-model/promote", {"version": filled.fit_version}),
            ("/v1/models/booking-world-model/rollback", {}),
            ("/v1/drift/run", {}),
            ("/v1/audit/heads", {}),
        ):
            answer = client.post(path, json=body)
            assert answer.status_code == 403, (path, answer.text[:200])
        assert client.get("/v1/exports").status_code == 200  # reading stays allowed


def test_a_read_key_sees_the_pages_but_not_the_audit_page(filled: Filled) -> None:
    reader = UiClient(filled.url, filled.read)
    try:
        assert reader.get("/ui/requests").status_code == 200
        denied = reader.get("/ui/audit")
        assert denied.status_code == 403 and "audit" in denied.text
        assert reader.post("/ui/audit/verify").status_code == 403
    finally:
        reader.close()


def test_revoking_the_key_ends_its_sessions(filled: Filled) -> None:
    key = filled.live.key(PROJECT, "audit")
    client = UiClient(filled.url, key)
    try:
        assert client.get("/ui/requests").status_code == 200
        projects.revoke_key(filled.live.engine, key[:12])
        assert client.get("/ui/requests").status_code == 303
    finally:
        client.close()


def test_login_redirects_only_within_the_dashboard(filled: Filled) -> None:
    with httpx.Client(base_url=filled.url, timeout=30) as client:
        for target, expected in [
            ("/ui/models", "/ui/models"),
            ("https://evil.example/", "/ui/"),
            ("//evil.example/ui", "/ui/"),
            ("/v1/requests", "/ui/"),
        ]:
            form = client.get("/ui/login", params={"next": target})
            token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
            assert token
            answer = client.post(
                "/ui/login", data={"key": filled.read, "csrf_token": token[1], "next": target}
            )
            assert answer.headers["location"] == expected, target
            client.cookies.clear()


def test_pages_carry_the_security_headers(filled: Filled, auditor: UiClient) -> None:
    answer = auditor.get("/ui/")
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in answer.text  # no inline script: the policy would block it


def test_a_session_token_expires_and_cannot_be_altered() -> None:
    from app.dashboard import session

    secret = b"server secret"
    fresh = session.sign(secret, {"k": "wdn_abc", "p": 1, "exp": time.time() + 60})
    assert session.unsign(secret, fresh) == {"k": "wdn_abc", "p": 1, "exp": pytest.approx(
        time.time() + 60, abs=5)}  # fmt: skip
    assert session.unsign(b"another secret", fresh) is None
    stale = session.sign(secret, {"k": "wdn_abc", "p": 1, "exp": time.time() - 1})
    assert session.unsign(secret, stale) is None
    body, mac = fresh.split(".")
    assert session.unsign(secret, f"{body}x.{mac}") is None
    for junk in (None, "", "a.b.c", "!!!.???"):
        assert session.unsign(secret, junk) is None
