"""The review queue: list (read), approve and reject (admin)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from app.api.deps import Admin, EngineDep, Reader
from app.api.schemas import SQL_INT_MAX, ReviewList, errors
from app.governance import reviews
from app.governance.read_models import ReviewOut

router = APIRouter(tags=["reviews"], responses=errors(401, 403))
ReviewId = Annotated[int, Path(ge=0, le=SQL_INT_MAX)]


class DecisionBody(BaseModel):
    note: str = ""


@router.get(
    "/v1/reviews",
    summary="Decisions waiting for (or decided by) a person",
    responses=errors(400),
)
async def list_reviews(
    principal: Reader,
    engine: EngineDep,
    status: Annotated[
        Literal["pending", "approved", "rejected"] | None,
        Query(description="pending, approved or rejected"),
    ] = "pending",
) -> ReviewList:
    items = await run_in_threadpool(reviews.list_reviews, engine, principal.project_id, status)
    return ReviewList(items=items)


@router.post(
    "/v1/reviews/{review_id}/approve",
    summary="Approve a parked decision",
    responses=errors(404, 409),
)
async def approve(
    review_id: ReviewId, body: DecisionBody, principal: Admin, engine: EngineDep
) -> ReviewOut:
    return await run_in_threadpool(
        reviews.decide, engine, principal.project_id, review_id, True,
        f"key:{principal.key_id}", body.note,
    )  # fmt: skip


@router.post(
    "/v1/reviews/{review_id}/reject",
    summary="Reject a parked decision",
    responses=errors(404, 409),
)
async def reject(
    review_id: ReviewId, body: DecisionBody, principal: Admin, engine: EngineDep
) -> ReviewOut:
    return await run_in_threadpool(
        reviews.decide, engine, principal.project_id, review_id, False,
        f"key:{principal.key_id}", body.note,
    )  # fmt: skip
