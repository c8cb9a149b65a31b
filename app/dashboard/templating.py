"""Rendering the dashboard: Jinja2 templates, their filters, and the route class that turns
errors into pages and adds the security headers to every answer."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.exc import OperationalError

from app.dashboard.session import LoginRequired, Viewer
from app.errors import WardenError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

log = logging.getLogger("warden.dashboard")
HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
PREFIX = "/ui"

# Scripts only from the dashboard's own static folder; no inline script, no other origin.
# Inline style attributes are allowed (bar widths of the waterfall); nothing else loads.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _when(unix_nano: int | None) -> str:
    if not isinstance(unix_nano, int | float):
        return "—"
    moment = datetime.fromtimestamp(unix_nano / 1e9, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _moment(value: datetime | str | None) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, datetime):
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _ms(value: float | None) -> str:
    if not isinstance(value, int | float):
        return "—"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms"


def _pct(value: float | None) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, int | float) else "—"


def _num(value: float | int | None, digits: int = 4) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return "—" if value is None or isinstance(value, jinja2.Undefined) else str(value)


environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=jinja2.select_autoescape(["html", "svg"]),
    # Stored JSON (drift scores, lineage snapshots, verdicts) varies with its writer's
    # version: a member it lacks shows as empty, it does not fail the page.
    undefined=jinja2.ChainableUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters.update(when=_when, moment=_moment, ms=_ms, pct=_pct, num=_num)
environment.globals.update(prefix=PREFIX, urlencode=urlencode)


def render(
    request: Request,
    template: str,
    viewer: Viewer | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    page = environment.get_template(template).render(
        request=request, viewer=viewer, path=request.url.path, **context
    )
    return HTMLResponse(page, status_code=status_code)


def render_page(
    request: Request,
    template: str,
    viewer: Viewer,
    page: DataclassInstance,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render a view's page object (a dataclass): each of its fields is a name the template
    reads."""
    fields = {f.name: getattr(page, f.name) for f in dataclasses.fields(page)}
    return render(request, template, viewer, status_code, **fields, **context)


def _error_page(request: Request, status: int, message: str) -> Response:
    titles = {400: "Bad request", 401: "Log in", 403: "Not allowed", 404: "Not found",
              409: "Conflict", 500: "Internal error", 503: "Unavailable"}  # fmt: skip
    return render(
        request, "error.html", None, status_code=status,
        title=titles.get(status, "Error"), message=message, status=status,
    )  # fmt: skip


class DashboardRoute(APIRoute):
    """A dashboard route: a missing session sends a page view to the login form; Warden's
    errors become pages with their status; every answer gets the security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await handler(request)
            except LoginRequired as exc:
                if request.method == "GET":
                    target = request.url.path + (
                        f"?{request.url.query}" if request.url.query else ""
                    )
                    response = RedirectResponse(
                        f"{PREFIX}/login?next={quote(target, safe='')}", status_code=303
                    )
                else:
                    response = _error_page(request, 401, exc.message)
            except WardenError as exc:
                response = _error_page(request, exc.status_code, exc.message)
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
                )
                response = _error_page(request, 400, f"invalid request: {problems}")
            except OperationalError:
                log.exception("database unavailable on %s", request.url.path)
                response = _error_page(request, 503, "The database is unavailable: try again.")
            except Exception:
                log.exception("internal error on %s", request.url.path)
                response = _error_page(
                    request, 500, "Internal error: the service log says what went wrong."
                )
            for name, value in HEADERS.items():
                response.headers.setdefault(name, value)
            elapsed = (time.perf_counter() - started) * 1000
            response.headers["Server-Timing"] = f"app;dur={elapsed:.1f}"
            return response

        return handle
