"""Logging in with an API key, and out."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from app.api.deps import EngineDep, ServerSecretDep
from app.dashboard import session
from app.dashboard.routes.deps import ActionDep, page_router
from app.dashboard.templating import PREFIX, render
from app.errors import Unauthenticated
from app.tenancy.keys import Scope
from app.tenancy.projects import authenticate

router = page_router()


def _safe_next(target: str | None) -> str:
    """Only a path of the dashboard: never another site (an open redirect)."""
    if not target:
        return f"{PREFIX}/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(PREFIX) or "\\" in target:
        return f"{PREFIX}/"
    if parts.path.startswith(f"{PREFIX}/login"):
        return f"{PREFIX}/"
    return target


def _login_page(
    request: Request,
    server_secret: bytes,
    next_url: str,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(
        request, "login.html", None, status_code=status_code, title="Log in", token=token,
        next=_safe_next(next_url), error=error, hours=session.SESSION_SECONDS // 3600,
    )  # fmt: skip
    session.login_token(response, request, server_secret, token)
    return response


@router.get("/login")
def login_form(
    request: Request, engine: EngineDep, server_secret: ServerSecretDep, next: str | None = None
) -> Response:
    try:
        session.viewer_of(request, engine, server_secret)
    except session.LoginRequired:
        return _login_page(request, server_secret, next or "")
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/login")
async def login(request: Request, engine: EngineDep, server_secret: ServerSecretDep) -> Response:
    form = await session.read_form(request)
    session.check_login_token(request, server_secret, form)
    key = form.get("key", "").strip()
    next_url = form.get("next", "")
    try:
        principal = await run_in_threadpool(authenticate, engine, server_secret, f"Bearer {key}")
    except Unauthenticated as exc:
        return _login_page(request, server_secret, next_url, f"{exc.message}.", 401)
    if Scope.READ not in principal.scopes:
        return _login_page(
            request, server_secret, next_url,
            "This key may not read (its scope is ingest only): log in with a read, audit or "
            "admin key.", 403,
        )  # fmt: skip
    response = RedirectResponse(_safe_next(next_url), status_code=303)
    session.start_session(response, request, server_secret, principal)
    return response


@router.post("/logout")
async def logout(request: Request, action: ActionDep) -> Response:
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    session.end_session(response, request)
    return response
