"""Experiments: the project's experiments with their verdicts, and one experiment's arms,
curves, sample-ratio check and shadow disagreements."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from app.api.deps import EngineDep
from app.dashboard.routes.deps import ViewerDep, page_router
from app.dashboard.templating import render_page
from app.dashboard.views import experiments

router = page_router()


@router.get("/experiments")
def list_page(request: Request, viewer: ViewerDep, engine: EngineDep) -> Response:
    page = experiments.experiments_page(engine, viewer.principal.project_id)
    return render_page(
        request, "experiments.html", viewer, page, title="Experiments",
        verdict_class=experiments.verdict_class,
    )  # fmt: skip


@router.get("/experiments/{name}")
def detail_page(request: Request, name: str, viewer: ViewerDep, engine: EngineDep) -> Response:
    page = experiments.experiment_page(engine, viewer.principal.project_id, name)
    return render_page(request, "experiment.html", viewer, page, title=f"Experiment {name}")
