"""Dependencies of the dashboard's routes, declared once as typed aliases: who is looking
(`ViewerDep`, `AuditorDep`), and who acts through a POST (`ActionDep` and its scoped kinds).
What the service holds (engine, settings, keys, policies, export jobs) comes from
`app.api.deps`, as for the API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from app.api.deps import EngineDep, ServerSecretDep
from app.dashboard.session import Action, Viewer, action_of, viewer_of
from app.dashboard.templating import PREFIX, DashboardRoute
from app.tenancy.keys import Scope


def get_viewer(request: Request, engine: EngineDep, server_secret: ServerSecretDep) -> Viewer:
    return viewer_of(request, engine, server_secret)


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


def get_auditor(viewer: ViewerDep) -> Viewer:
    """A viewer whose key holds the audit scope (the audit page and its exports)."""
    viewer.principal.require(Scope.AUDIT)
    return viewer


AuditorDep = Annotated[Viewer, Depends(get_auditor)]


def _acting(scope: Scope | None) -> Any:
    async def action(request: Request, viewer: ViewerDep) -> Action:
        return await action_of(request, viewer, scope)

    return Depends(action)


# A POST of a logged-in viewer, its CSRF token checked; the scoped kinds also require the
# scope (admin: anything that changes state; audit: verifying the ledger, read-only).
ActionDep = Annotated[Action, _acting(None)]
AdminActionDep = Annotated[Action, _acting(Scope.ADMIN)]
AuditActionDep = Annotated[Action, _acting(Scope.AUDIT)]


def page_router() -> APIRouter:
    return APIRouter(prefix=PREFIX, route_class=DashboardRoute, include_in_schema=False)
