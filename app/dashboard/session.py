"""Dashboard sessions: a signed cookie that names an API key, and the CSRF token of its forms.

Logging in takes an API key once; the cookie then holds the key's public id, its project,
an expiry and a random CSRF token, HMAC-SHA256-signed under a key derived from the server
secret (never the API key itself). Every request re-reads the key's row, so revoking the key
ends its sessions at once, and a changed scope applies at once. The cookie is `HttpOnly`,
`SameSite=Strict`, and `Secure` when the dashboard is served over https.

Every POST carries the session's CSRF token (a hidden form field `csrf_token`, or the
`X-CSRF-Token` header) and is refused without it; the login form, before any session, uses
a signed token of its own in a short-lived cookie (double submit).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import Engine

from app.errors import BadRequest, Forbidden, WardenError
from app.tenancy.keys import Scope
from app.tenancy.projects import Principal, active_principal

COOKIE = "warden_session"
LOGIN_COOKIE = "warden_login"
SESSION_SECONDS = 8 * 3600
LOGIN_SECONDS = 3600
FORM_LIMIT = 64 * 1024
_CONTEXT = b"warden dashboard session v1"


class LoginRequired(WardenError):
    """No session, or one that expired or whose key was revoked: log in again."""

    status_code = 401


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: the key's principal, and the CSRF token their forms carry."""

    principal: Principal
    csrf: str
    expires: int

    @property
    def can_act(self) -> bool:
        return Scope.ADMIN in self.principal.scopes

    @property
    def can_audit(self) -> bool:
        return Scope.AUDIT in self.principal.scopes

    @property
    def actor(self) -> str:
        return f"key:{self.principal.key_id}"


def _mac_key(server_secret: bytes) -> bytes:
    return hmac.new(server_secret, _CONTEXT, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(server_secret: bytes, payload: dict[str, Any]) -> str:
    body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    mac = hmac.new(_mac_key(server_secret), body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(mac)}"


def unsign(server_secret: bytes, token: str | None) -> dict[str, Any] | None:
    """The payload of a token `sign` made, or None if it is malformed, forged or expired."""
    if not token or token.count(".") != 1:
        return None
    body_text, mac_text = token.split(".")
    try:
        body, mac = _unb64(body_text), _unb64(mac_text)
    except (binascii.Error, ValueError):
        return None
    expected = hmac.new(_mac_key(server_secret), body, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        return None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(payload, dict) or int(payload.get("exp", 0)) < time.time():
        return None
    return payload


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _set_cookie(response: Response, request: Request, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name, value, max_age=age, path="/ui", httponly=True, samesite="strict",
        secure=_secure(request),
    )  # fmt: skip


def start_session(
    response: Response,
    request: Request,
    server_secret: bytes,
    principal: Principal,
    now: float | None = None,
) -> None:
    """Set the session cookie for `principal` (after a successful login)."""
    now = now or time.time()
    payload = {
        "k": principal.key_id, "p": principal.project_id, "iat": int(now),
        "exp": int(now) + SESSION_SECONDS, "c": secrets.token_urlsafe(32),
    }  # fmt: skip
    _set_cookie(response, request, COOKIE, sign(server_secret, payload), SESSION_SECONDS)
    response.delete_cookie(LOGIN_COOKIE, path="/ui")


def end_session(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict",
                           secure=_secure(request))  # fmt: skip


def login_token(response: Response, request: Request, server_secret: bytes, token: str) -> None:
    """Set the signed cookie that pairs with the login form's CSRF `token`."""
    payload = {"t": token, "exp": int(time.time()) + LOGIN_SECONDS}
    _set_cookie(response, request, LOGIN_COOKIE, sign(server_secret, payload), LOGIN_SECONDS)


def check_login_token(request: Request, server_secret: bytes, form: dict[str, str]) -> None:
    payload = unsign(server_secret, request.cookies.get(LOGIN_COOKIE))
    sent = form.get("csrf_token", "")
    if payload is None or not sent or not hmac.compare_digest(str(payload.get("t")), sent):
        raise Forbidden("the login form expired or did not come from this dashboard: reload it")


def viewer_of(request: Request, engine: Engine, server_secret: bytes) -> Viewer:
    """The viewer of a dashboard request (its session cookie), or `LoginRequired`."""
    payload = unsign(server_secret, request.cookies.get(COOKIE))
    if payload is None:
        raise LoginRequired("log in with an API key to see the dashboard")
    try:
        key_id, project_id, csrf = str(payload["k"]), int(payload["p"]), str(payload["c"])
    except (KeyError, TypeError, ValueError):
        raise LoginRequired("log in again") from None
    principal = active_principal(engine, key_id, project_id)
    if principal is None:
        raise LoginRequired("the key of this session was revoked: log in with another")
    if Scope.READ not in principal.scopes:
        raise LoginRequired("this key may not read: log in with a read, audit or admin key")
    return Viewer(principal, csrf, int(payload["exp"]))


async def read_form(request: Request) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body as a dict (the last value of each name)."""
    kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    body = await request.body()
    if len(body) > FORM_LIMIT:
        raise BadRequest("the form is too large")
    if body and kind != "application/x-www-form-urlencoded":
        raise BadRequest("send the form as application/x-www-form-urlencoded")
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"malformed form: {exc}") from None
    return {name: values[-1] for name, values in parsed.items()}


def check_csrf(request: Request, viewer: Viewer, form: dict[str, str]) -> None:
    """Refuse a POST that does not carry this session's CSRF token (403)."""
    sent = form.get("csrf_token") or request.headers.get("x-csrf-token") or ""
    if not sent or not hmac.compare_digest(sent, viewer.csrf):
        raise Forbidden("missing or wrong CSRF token: reload the page and submit the form again")


@dataclass(frozen=True, slots=True)
class Action:
    """A state-changing POST: who acts (logged in, CSRF token checked) and their form."""

    viewer: Viewer
    form: dict[str, str]


async def action_of(request: Request, viewer: Viewer, scope: Scope | None) -> Action:
    """The action of a POST by `viewer`: its form read, its CSRF token checked, `scope`
    (if any) required, in that order."""
    form = await read_form(request)
    check_csrf(request, viewer, form)
    if scope is not None:
        viewer.principal.require(scope)
    return Action(viewer, form)
