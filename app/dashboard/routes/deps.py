"""Dependencies of the dashboard's routes, declared once as typed aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from app.dashboard.session import Viewer, viewer_of
from app.dashboard.templating import PREFIX, DashboardRoute


def get_viewer(request: Request) -> Viewer:
    return viewer_of(request)


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


def page_router() -> APIRouter:
    return APIRouter(prefix=PREFIX, route_class=DashboardRoute, include_in_schema=False)
