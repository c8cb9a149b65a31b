"""Stored drift reports: listing with filters, newest first, a page at a time; the windows
they judged; whether a report names an MLflow run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from app.drift.detectors import registry
from app.drift.read_models import DriftReportPage, DriftWindow, StoredDriftReport
from app.errors import BadRequest, NotFound
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


_WINDOW = (
    DriftReport.id, DriftReport.job_id, DriftReport.model_name, DriftReport.model_version,
    DriftReport.kind, DriftReport.verdict, DriftReport.window_start_unix_nano,
    DriftReport.window_end_unix_nano,
)  # fmt: skip


def recent_windows(engine: Engine, project_id: int, limit: int = 30) -> list[DriftWindow]:
    """The newest drift jobs' current windows, one per job (newest first), with each kind's
    verdict."""
    query = (
        select(*_WINDOW)
        .where(DriftReport.project_id == project_id)
        .order_by(DriftReport.id.desc())
        .limit(limit * 3)
    )
    with read_connection(engine) as conn:
        rows = conn.execute(query).all()
    seen: dict[str, DriftWindow] = {}
    for row in rows:
        window = seen.setdefault(row.job_id or str(row.id), _window(row))
        window.verdicts[row.kind] = row.verdict
    return list(seen.values())[:limit]


def window_of(engine: Engine, project_id: int, report_id: int) -> DriftWindow:
    """The window a report judged (with that report's verdict), or 404."""
    with read_connection(engine) as conn:
        row = conn.execute(
            select(*_WINDOW).where(
                DriftReport.project_id == project_id, DriftReport.id == report_id
            )
        ).one_or_none()
    if row is None:
        raise NotFound(f"no drift report {report_id} in this project")
    window = _window(row)
    window.verdicts[row.kind] = row.verdict
    return window


def _window(row: Any) -> DriftWindow:
    return DriftWindow(
        id=row.id, job_id=row.job_id, model_name=row.model_name,
        model_version=row.model_version, window_start_unix_nano=row.window_start_unix_nano,
        window_end_unix_nano=row.window_end_unix_nano, verdicts={},
    )  # fmt: skip


def run_known(engine: Engine, project_id: int, run_id: str) -> bool:
    """Whether a drift report of this project names MLflow run `run_id`."""
    with read_connection(engine) as conn:
        found = conn.execute(
            select(DriftReport.id)
            .where(DriftReport.project_id == project_id, DriftReport.mlflow_run_id == run_id)
            .limit(1)
        ).first()
    return found is not None
