"""Requests: the filtered, paginated list, and one request in detail."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from app.api.deps import AuditKeyDep, EngineDep, PoliciesDep, SettingsDep, TraceLayoutsDep
from app.dashboard.routes.deps import ViewerDep, page_router
from app.dashboard.templating import render_page
from app.dashboard.views import request_detail
from app.dashboard.views.requests import Filters, requests_page

router = page_router()


@router.get("/requests")
def list_page(
    request: Request,
    viewer: ViewerDep,
    engine: EngineDep,
    policies: PoliciesDep,
    since: str | None = None,
    until: str | None = None,
    model: str | None = None,
    outcome: str | None = None,
    policy: str | None = None,
    policy_outcome: str | None = None,
    drift: str | None = None,
    fingerprint: str | None = None,
    cursor: str | None = None,
) -> Response:
    form = Filters(
        since=since or "", until=until or "", model=model or "", outcome=outcome or "",
        policy=policy or "", policy_outcome=policy_outcome or "", drift=drift or "",
        fingerprint=fingerprint or "",
    )  # fmt: skip
    page = requests_page(engine, policies, viewer.principal.project_id, form, cursor)
    return render_page(request, "requests.html", viewer, page, title="Requests")


@router.get("/requests/{request_id}")
def detail_page(
    request: Request,
    request_id: str,
    viewer: ViewerDep,
    engine: EngineDep,
    layouts: TraceLayoutsDep,
    settings: SettingsDep,
    spans: int = 0,
    focus: str | None = None,
    levels: str | None = None,
) -> Response:
    page = request_detail.request_page(
        engine, layouts, settings.resolved_mlflow_tracking_uri, viewer.principal.project_id,
        request_id, spans, focus, levels,
    )  # fmt: skip
    title = f"Request {page.record.trace_id[:12]}…"
    return render_page(request, "request.html", viewer, page, title=title)


@router.get("/requests/{request_id}/proof")
def proof_fragment(
    request: Request, request_id: str, viewer: ViewerDep, engine: EngineDep, key: AuditKeyDep
) -> Response:
    """The inclusion-proof status of the request's ledger event (loaded after the page)."""
    fragment = request_detail.proof_fragment(
        engine, key.public_key(), viewer.principal.project_id, request_id
    )
    return render_page(request, "partials/proof.html", viewer, fragment, title="Inclusion proof")
