"""Policies: the loaded set with versions and hashes, how often each fired, and the review
queue with approve and reject (admin)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from app.dashboard import catalog, overview
from app.dashboard.routes.deps import ViewerDep, page_router
from app.dashboard.session import acting
from app.dashboard.templating import PREFIX, render
from app.errors import BadRequest, WardenError
from app.governance import reviews

router = page_router()
DECIDED_SHOWN = 20


@router.get("/policies")
def policies_page(
    request: Request,
    viewer: ViewerDep,
    range: str = "7d",
    decided: int | None = None,
    error: str | None = None,
) -> Response:
    if range not in overview.RANGES:
        raise BadRequest(f"range must be one of {', '.join(overview.RANGES)}")
    engine = request.app.state.engine
    pid = viewer.principal.project_id
    loaded = request.app.state.policies
    since = time.time_ns() - overview.RANGES[range] * 1_000_000_000
    hits = catalog.policy_hits(engine, pid, [p.id for p in loaded.policies], since)
    rows: list[dict[str, Any]] = []
    for p in sorted(loaded.policies, key=lambda p: (p.phase.value, p.id)):
        counts = hits.get(p.id, {})
        total = sum(counts.values())
        fired = total - counts.get("allow", 0)
        rows.append({"policy": p, "counts": counts, "total": total,
                     "rate": fired / total if total else None})  # fmt: skip
    pending = reviews.list_reviews(engine, pid, "pending")
    decided_ones = [
        *reviews.list_reviews(engine, pid, "approved"),
        *reviews.list_reviews(engine, pid, "rejected"),
    ]
    done = sorted(decided_ones, key=lambda r: r.decided_at or r.created_at, reverse=True)
    done = done[:DECIDED_SHOWN]
    return render(
        request, "policies.html", viewer, title="Policies", rows=rows, set_hash=loaded.hash,
        range=range, ranges=list(overview.RANGES), pending=pending, done=done,
        decided=decided, error=error,
    )  # fmt: skip


async def _decide(request: Request, review_id: int, approve: bool) -> Response:
    viewer, form = await acting(request)
    p = viewer.principal
    try:
        await run_in_threadpool(
            reviews.decide, request.app.state.engine, p.project_id, review_id, approve,
            viewer.actor, form.get("note", "").strip(),
        )  # fmt: skip
    except WardenError as exc:
        return await run_in_threadpool(policies_page, request, viewer, error=exc.message)
    return RedirectResponse(f"{PREFIX}/policies?decided={review_id}#reviews-h", status_code=303)


@router.post("/reviews/{review_id}/approve")
async def approve(request: Request, review_id: int) -> Response:
    return await _decide(request, review_id, True)


@router.post("/reviews/{review_id}/reject")
async def reject(request: Request, review_id: int) -> Response:
    return await _decide(request, review_id, False)
