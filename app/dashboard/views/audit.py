"""The audit page: where the ledger stands (size, root, signed heads, newest events), the
project's export jobs, and the outcome of a verification just run."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from app.audit import ledger
from app.audit.exports import ExportJobs
from app.audit.heads import TreeHead
from app.audit.ledger import checkpoints
from app.audit.ledger.read_models import LedgerEvent
from app.audit.ledger.verify import Report
from app.audit.read_models import ExportStatus
from app.registry import model_versions
from app.tenancy.projects import Principal

RECENT = 15  # newest events shown
HEADS = 10  # newest signed heads shown


@dataclass(frozen=True)
class LedgerStatus:
    size: int
    root: str  # the Merkle root now (hex), unsigned
    heads: list[TreeHead]  # newest first
    events: list[LedgerEvent]  # newest first


@dataclass(frozen=True)
class AuditPage:
    ledger: LedgerStatus
    exports: list[ExportStatus] | None  # None where the service runs no export jobs
    names: list[str]  # model names, for the export form
    report: Report | None = None  # a verification just run
    error: str | None = None
    notice: str | None = None


def ledger_status(engine: Engine, project_id: int) -> LedgerStatus:
    """Size and root of the ledger now, its newest signed heads and events."""
    state = checkpoints.head_state(engine, project_id)
    size = state.tree_size
    recent = (
        ledger.list_events(engine, project_id, max(1, size - RECENT + 1), RECENT).items
        if size
        else []
    )
    return LedgerStatus(
        size=size,
        root=state.root_hash,
        heads=checkpoints.list_heads(engine, project_id, limit=HEADS),
        events=list(reversed(recent)),
    )


def export_status(jobs: ExportJobs, principal: Principal, export_id: str) -> ExportStatus:
    """One export job of the principal's project; 404 for another's."""
    return jobs.get(principal.project, export_id)


def audit_page(
    engine: Engine,
    jobs: ExportJobs | None,
    principal: Principal,
    report: Report | None = None,
    error: str | None = None,
    notice: str | None = None,
) -> AuditPage:
    exports = (
        jobs.list(principal.project) if jobs else None
    )
    return AuditPage(
        ledger=ledger_status(engine, principal.project_id),
        exports=exports,
        names=sorted({v.name for v in model_versions.seen_versions(engine, principal.project_id)}),
        report=report,
        error=error,
        notice=notice,
    )
