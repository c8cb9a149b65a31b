"""The overview: traffic, drift per serving version, the ledger's last signed head."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from app.dashboard import overview
from app.dashboard.routes.deps import ViewerDep, page_router
from app.dashboard.templating import PREFIX, render

router = page_router()


@router.get("")
def root() -> Response:
    return RedirectResponse(f"{PREFIX}/", status_code=307)


@router.get("/")
def overview_page(
    request: Request, viewer: ViewerDep, range: str = overview.DEFAULT_RANGE
) -> Response:
    found = overview.traffic(request.app.state.engine, viewer.principal.project_id, range)
    s = found.series
    charts: dict[str, Any] = {
        "traffic": {"x": s["t"], "time": True, "yLabel": "requests / minute",
                    "series": [{"label": "requests / minute", "values": s["per_minute"]}]},
        "latency": {"x": s["t"], "time": True, "yLabel": "ms",
                    "series": [{"label": "p50 (ms)", "values": s["p50"]},
                               {"label": "p95 (ms)", "values": s["p95"]}]},
        "rates": {"x": s["t"], "time": True, "yLabel": "share of requests",
                  "series": [{"label": "deny", "values": s["deny"], "color": "#dc2626"},
                             {"label": "warn", "values": s["warn"], "color": "#d97706"},
                             {"label": "review", "values": s["review"], "color": "#7c3aed"},
                             {"label": "error", "values": s["error"], "color": "#475569"}]},
    }  # fmt: skip
    return render(
        request, "overview.html", viewer, title="Overview", o=found, charts=charts,
        ranges=list(overview.RANGES),
    )  # fmt: skip
