"""The overview: traffic, drift per serving version, the ledger's last signed head."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from app.api.deps import EngineDep
from app.dashboard.routes.deps import ViewerDep, page_router
from app.dashboard.templating import PREFIX, render_page
from app.dashboard.views import overview
from app.dashboard.views.experiments import verdict_class

router = page_router()


@router.get("")
def root() -> Response:
    return RedirectResponse(f"{PREFIX}/", status_code=307)


@router.get("/")
def overview_page(
    request: Request, viewer: ViewerDep, engine: EngineDep, range: str = overview.DEFAULT_RANGE
) -> Response:
    page = overview.overview_page(engine, viewer.principal.project_id, range)
    return render_page(
        request, "overview.html", viewer, page, title="Overview", verdict_class=verdict_class
    )
