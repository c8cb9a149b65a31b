"""Helpers of the dashboard tests: logging in (a browser page, or plain HTTP), and the
accessibility checks every page must pass."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

# Every form control a person can reach, with the name a screen reader would read for it.
_UNLABELLED = """
() => Array.from(document.querySelectorAll('input, select, textarea'))
  .filter(el => el.type !== 'hidden')
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !el.getAttribute('aria-labelledby'))
  .map(el => el.outerHTML.slice(0, 120))
"""
_NAMELESS_BUTTONS = """
() => Array.from(document.querySelectorAll('button, a[href]'))
  .filter(el => !(el.textContent.trim() || el.getAttribute('aria-label')))
  .map(el => el.outerHTML.slice(0, 120))
"""


def login(page: Any, url: str, key: str, then: str = "/ui/") -> None:
    """Log in through the form, as a person would, and land on `then`."""
    page.goto(f"{url}{then}")
    assert "/ui/login" in page.url  # sent to the form first
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{url}{then}")


def check_accessibility(page: Any) -> None:
    """A title, the landmarks (banner, navigation, main), a label for every form control,
    a name for every button and link."""
    assert page.title().strip() and page.title().endswith("· Warden")
    assert page.locator("header").count() == 1
    assert page.locator("nav").count() >= 1
    assert page.locator("main").count() == 1
    assert page.locator("h1").count() == 1
    assert page.evaluate(_UNLABELLED) == []
    assert page.evaluate(_NAMELESS_BUTTONS) == []


def tab_reaches(page: Any, selector: str, presses: int = 80) -> bool:
    """Whether pressing Tab from the top of the page focuses the element `selector` names."""
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); }")
    page.locator("body").focus()
    target = page.locator(selector).first.element_handle()
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("(el) => document.activeElement === el", target):
            return True
    return False


def screenshot(page: Any, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


class UiClient:
    """The dashboard over plain HTTP with a session cookie, for what a browser will not do
    (a POST without its CSRF token, a forged cookie)."""

    def __init__(self, url: str, key: str | None = None) -> None:
        self.http = httpx.Client(base_url=url, follow_redirects=False, timeout=60)
        self.csrf = ""
        if key is not None:
            form = self.http.get("/ui/login")
            token = _token(form.text)
            answer = self.http.post(
                "/ui/login", data={"key": key, "csrf_token": token, "next": "/ui/"}
            )
            assert answer.status_code == 303, answer.text
            self.csrf = _token(self.http.get("/ui/").text)

    def post(self, path: str, data: dict[str, str] | None = None, csrf: bool = True) -> Any:
        body = dict(data or {})
        if csrf:
            body["csrf_token"] = self.csrf
        return self.http.post(path, data=body)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.http.get(path, **kwargs)

    def close(self) -> None:
        self.http.close()


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)
