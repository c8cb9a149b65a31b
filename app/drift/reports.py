"""Stored drift reports: listing with filters, newest first, a page at a time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from app.drift.detectors import registry
from app.drift.read_models import DriftReportPage, StoredDriftReport
from app.errors import BadRequest
from app.store.engine import read_connection
from app.store.tables import DriftReport

MAX_PAGE = 500
KINDS = registry.KINDS
VERDICTS = ("none", "warn", "drift")


def list_reports(
    engine: Engine,
    project_id: int,
    model_name: str | None = None,
    model_version: str | None = None,
    kind: str | None = None,
    verdict: str | None = None,
    since: datetime | None = None,
    job_id: str | None = None,
    limit: int = 50,
    cursor: int | None = None,
) -> DriftReportPage:
    """Reports newest first; `next_cursor` (a report id) continues where the page ended."""
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be between 1 and {MAX_PAGE}")
    if kind is not None and kind not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if verdict is not None and verdict not in VERDICTS:
        raise BadRequest(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    if model_version and not model_name:
        raise BadRequest("model_version needs model_name too")
    query = select(DriftReport).where(DriftReport.project_id == project_id)
    if model_name:
        query = query.where(DriftReport.model_name == model_name)
    if model_version:
        query = query.where(DriftReport.model_version == model_version)
    if kind:
        query = query.where(DriftReport.kind == kind)
    if verdict:
        query = query.where(DriftReport.verdict == verdict)
    if since:
        query = query.where(DriftReport.created_at >= since)
    if job_id:
        query = query.where(DriftReport.job_id == job_id)
    if cursor is not None:
        query = query.where(DriftReport.id < cursor)
    query = query.order_by(DriftReport.id.desc()).limit(limit + 1)
    with read_connection(engine) as conn:
        rows = conn.execute(query).all()
    page = rows[:limit]
    return DriftReportPage(
        items=[_report(r) for r in page],
        next_cursor=str(page[-1].id) if len(rows) > limit else None,
    )


def _report(row: Any) -> StoredDriftReport:
    return StoredDriftReport(
        id=row.id,
        job_id=row.job_id,
        model_name=row.model_name,
        model_version=row.model_version,
        kind=row.kind,
        verdict=row.verdict,
        window_start_unix_nano=row.window_start_unix_nano,
        window_end_unix_nano=row.window_end_unix_nano,
        reference=row.reference,
        scores=row.scores,
        mlflow_run_id=row.mlflow_run_id,
        created_at=row.created_at.isoformat(),
    )
