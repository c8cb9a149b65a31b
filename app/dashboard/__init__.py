"""The audit dashboard: server-rendered pages under `/ui`, behind the API's keys and scopes.

`routes/` are thin: they take what they need as typed dependencies (`routes/deps.py`,
`app.api.deps`), call one function of `views/` (the page as a typed object, read through the
same store and service functions as the API) and render its template (`templating`).
`session` holds the signed session cookie and the CSRF checks. `install(app)` adds the
routes and the static files to the service; `Roller` (in `rollups`) keeps the overview's
traffic rollups current.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.dashboard.routes import audit as audit_routes
from app.dashboard.routes import auth as auth_routes
from app.dashboard.routes import drift as drift_routes
from app.dashboard.routes import experiments as experiments_routes
from app.dashboard.routes import models as models_routes
from app.dashboard.routes import overview as overview_routes
from app.dashboard.routes import policies as policies_routes
from app.dashboard.routes import requests as requests_routes
from app.dashboard.templating import PREFIX, STATIC

__all__ = ["install"]


def install(app: FastAPI) -> None:
    """Serve the dashboard at `/ui` (its files at `/ui/static`)."""
    for module in (
        auth_routes, overview_routes, requests_routes, models_routes, experiments_routes,
        drift_routes, policies_routes, audit_routes,
    ):  # fmt: skip
        app.include_router(module.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="dashboard-static")
