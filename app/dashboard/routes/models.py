"""Models: versions with their aliases, traffic and drift; the lineage graph; promote and
roll back through the deploy gates (admin)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from app.api.deps import EngineDep, PoliciesDep, SettingsDep
from app.dashboard.routes.deps import AdminActionDep, ViewerDep, page_router
from app.dashboard.session import Viewer
from app.dashboard.templating import render_page
from app.dashboard.views.models import models_page
from app.errors import BadRequest, WardenError
from app.governance import deploy
from app.governance.deploy import AliasMove
from app.registry import lineage

router = page_router()


def _page(
    request: Request,
    viewer: Viewer,
    engine: Engine,
    tracking_uri: str,
    status_code: int = 200,
    result: AliasMove | None = None,
    error: str | None = None,
) -> Response:
    page = models_page(
        engine, viewer.principal.project_id, result, error, tracking_uri
    )
    return render_page(request, "models.html", viewer, page, status_code, title="Models")


@router.get("/models")
def models(
    request: Request, viewer: ViewerDep, engine: EngineDep, settings: SettingsDep
) -> Response:
    return _page(request, viewer, engine, settings.resolved_mlflow_tracking_uri)


def _field(form: dict[str, str], name: str, default: str = "") -> str:
    value = form.get(name, default).strip() or default
    if not value:
        raise BadRequest(f"give the {name}")
    return value


@router.post("/models/promote")
async def promote(
    request: Request,
    action: AdminActionDep,
    engine: EngineDep,
    settings: SettingsDep,
    policies: PoliciesDep,
) -> Response:
    viewer, form = action.viewer, action.form
    p = viewer.principal
    try:
        name, version = _field(form, "model"), _field(form, "version")
        alias = _field(form, "alias", "champion")
        move = await run_in_threadpool(
            deploy.promote, engine, lineage.mlflow_client(settings.resolved_mlflow_tracking_uri),
            policies, p.project_id, p.project, name, version, alias, viewer.actor,
        )  # fmt: skip
    except WardenError as exc:
        return await run_in_threadpool(
            _page, request, viewer, engine, settings.resolved_mlflow_tracking_uri,
            exc.status_code, error=exc.message,
        )  # fmt: skip
    return await run_in_threadpool(
        _page, request, viewer, engine, settings.resolved_mlflow_tracking_uri, result=move
    )


@router.post("/models/rollback")
async def rollback(
    request: Request, action: AdminActionDep, engine: EngineDep, settings: SettingsDep
) -> Response:
    viewer, form = action.viewer, action.form
    p = viewer.principal
    try:
        name, alias = _field(form, "model"), _field(form, "alias", "champion")
        move = await run_in_threadpool(
            deploy.rollback, engine, lineage.mlflow_client(settings.resolved_mlflow_tracking_uri),
            p.project_id, name, alias, viewer.actor, form.get("reason", "").strip(),
        )  # fmt: skip
    except WardenError as exc:
        return await run_in_threadpool(
            _page, request, viewer, engine, settings.resolved_mlflow_tracking_uri,
            exc.status_code, error=exc.message,
        )  # fmt: skip
    return await run_in_threadpool(
        _page, request, viewer, engine, settings.resolved_mlflow_tracking_uri, result=move
    )
