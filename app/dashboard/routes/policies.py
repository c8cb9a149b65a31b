"""Policies: the loaded set with versions and hashes, how often each fired, and the review
queue with approve and reject (admin)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from app.api.deps import EngineDep, PoliciesDep
from app.dashboard.routes.deps import AdminActionDep, ViewerDep, page_router
from app.dashboard.session import Action, Viewer
from app.dashboard.templating import PREFIX, render_page
from app.dashboard.views import policies as view
from app.errors import WardenError
from app.governance import reviews
from policies import PolicySet

router = page_router()


def _page(
    request: Request,
    viewer: Viewer,
    engine: Engine,
    policies: PolicySet,
    range_key: str = view.DEFAULT_RANGE,
    decided: int | None = None,
    error: str | None = None,
) -> Response:
    page = view.policies_page(
        engine, policies, viewer.principal.project_id, range_key, decided, error
    )
    return render_page(request, "policies.html", viewer, page, title="Policies")


@router.get("/policies")
def policies_page(
    request: Request,
    viewer: ViewerDep,
    engine: EngineDep,
    policies: PoliciesDep,
    range: str = view.DEFAULT_RANGE,
    decided: int | None = None,
    error: str | None = None,
) -> Response:
    return _page(request, viewer, engine, policies, range, decided, error)


async def _decide(
    request: Request,
    action: Action,
    engine: Engine,
    policies: PolicySet,
    review_id: int,
    approve: bool,
) -> Response:
    p = action.viewer.principal
    try:
        await run_in_threadpool(
            reviews.decide, engine, p.project_id, review_id, approve, action.viewer.actor,
            action.form.get("note", "").strip(),
        )  # fmt: skip
    except WardenError as exc:
        return await run_in_threadpool(
            _page, request, action.viewer, engine, policies, error=exc.message
        )
    return RedirectResponse(f"{PREFIX}/policies?decided={review_id}#reviews-h", status_code=303)


@router.post("/reviews/{review_id}/approve")
async def approve(
    request: Request,
    review_id: int,
    action: AdminActionDep,
    engine: EngineDep,
    policies: PoliciesDep,
) -> Response:
    return await _decide(request, action, engine, policies, review_id, True)


@router.post("/reviews/{review_id}/reject")
async def reject(
    request: Request,
    review_id: int,
    action: AdminActionDep,
    engine: EngineDep,
    policies: PoliciesDep,
) -> Response:
    return await _decide(request, action, engine, policies, review_id, False)
