"""Models: versions with their aliases, traffic and drift; the lineage graph; promote and
roll back through the deploy gates (admin)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from app.dashboard import catalog, lineage_graph
from app.dashboard.routes.deps import ViewerDep, page_router
from app.dashboard.session import Viewer, acting
from app.dashboard.templating import render
from app.drift import reports
from app.errors import BadRequest, WardenError
from app.governance import deploy
from app.registry import lineage

router = page_router()


def _context(request: Request, viewer: Viewer) -> dict[str, Any]:
    engine = request.app.state.engine
    pid = viewer.principal.project_id
    by_key = catalog.version_traffic(engine, pid)
    versions = catalog.versions(engine, pid)
    served = {v["name"] for v in versions if v["role"] == "world_model"}
    drift = {
        (v["name"], v["version"]): reports.list_reports(
            engine, pid, v["name"], v["version"], limit=30
        ).items
        for v in versions
    }
    return {
        "versions": versions, "traffic": by_key, "drift": drift,
        "graph": lineage_graph.build(versions, by_key),
        # The world model's name first: the one whose aliases the deploy gates usually move.
        "names": sorted({v["name"] for v in versions}, key=lambda n: (n not in served, n)),
        "moves": catalog.deployments(engine, pid),
    }  # fmt: skip


def _page(request: Request, viewer: Viewer, status_code: int = 200, **extra: Any) -> Response:
    context = {"result": None, "error": None, **_context(request, viewer), **extra}
    return render(request, "models.html", viewer, status_code=status_code, title="Models",
                  **context)  # fmt: skip


@router.get("/models")
def models_page(request: Request, viewer: ViewerDep) -> Response:
    return _page(request, viewer)


def _client(request: Request) -> Any:
    return lineage.mlflow_client(request.app.state.settings.resolved_mlflow_tracking_uri)


def _field(form: dict[str, str], name: str, default: str = "") -> str:
    value = form.get(name, default).strip() or default
    if not value:
        raise BadRequest(f"give the {name}")
    return value


@router.post("/models/promote")
async def promote(request: Request) -> Response:
    viewer, form = await acting(request)
    p = viewer.principal
    try:
        name, version = _field(form, "model"), _field(form, "version")
        alias = _field(form, "alias", "champion")
        move = await run_in_threadpool(
            deploy.promote, request.app.state.engine, _client(request),
            request.app.state.policies, p.project_id, p.project, name, version, alias,
            viewer.actor,
        )  # fmt: skip
    except WardenError as exc:
        return await run_in_threadpool(_page, request, viewer, exc.status_code, error=exc.message)
    return await run_in_threadpool(_page, request, viewer, result=move)


@router.post("/models/rollback")
async def rollback(request: Request) -> Response:
    viewer, form = await acting(request)
    p = viewer.principal
    try:
        name, alias = _field(form, "model"), _field(form, "alias", "champion")
        move = await run_in_threadpool(
            deploy.rollback, request.app.state.engine, _client(request), p.project_id, name,
            alias, viewer.actor, form.get("reason", "").strip(),
        )  # fmt: skip
    except WardenError as exc:
        return await run_in_threadpool(_page, request, viewer, exc.status_code, error=exc.message)
    return await run_in_threadpool(_page, request, viewer, result=move)
