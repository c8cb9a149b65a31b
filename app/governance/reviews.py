"""The review queue: decisions a `require_review` policy parked for a person."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select, update

from app.audit import ledger
from app.errors import BadRequest, Conflict, NotFound
from app.governance.read_models import ReviewOut
from app.store.engine import read_connection, write_transaction
from app.store.tables import Review

STATUSES = ("pending", "approved", "rejected")


def _row(review: Any) -> ReviewOut:
    return ReviewOut(
        id=review.id,
        request_id=review.trace_id,
        policy_id=review.policy_id,
        status=review.status,
        created_at=review.created_at,
        decided_at=review.decided_at,
        decided_by=review.decided_by,
        note=review.note,
    )


def list_reviews(
    engine: Engine, project_id: int, status: str | None = "pending"
) -> list[ReviewOut]:
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}")
    query = (
        select(Review).where(Review.project_id == project_id).order_by(Review.created_at, Review.id)
    )
    if status is not None:
        query = query.where(Review.status == status)
    with read_connection(engine) as conn:
        return [_row(r) for r in conn.execute(query)]


def decide(
    engine: Engine, project_id: int, review_id: int, approve: bool, actor: str, note: str = ""
) -> ReviewOut:
    """Approve or reject a pending review; 404 for another project's, 409 if already decided."""
    status = "approved" if approve else "rejected"
    with write_transaction(engine) as conn:
        current = conn.execute(
            select(Review.status).where(Review.id == review_id, Review.project_id == project_id)
        ).scalar_one_or_none()
        if current is None:
            raise NotFound(f"no review {review_id} in this project")
        if current != "pending":
            raise Conflict(f"review {review_id} was {current} already")
        conn.execute(
            update(Review)
            .where(Review.id == review_id)
            .values(
                status=status, decided_at=datetime.now(UTC), decided_by=actor, note=note or None
            )
        )
        row = conn.execute(select(Review).where(Review.id == review_id)).one()
        ledger.append(
            conn, project_id, None,
            ledger.REVIEW_APPROVED if approve else ledger.REVIEW_REJECTED,
            {"review_id": review_id, "trace_id": row.trace_id, "policy_id": row.policy_id,
             "actor": actor, "note": note or None},
        )  # fmt: skip
    return _row(row)
