"""Typed read models of audit exports: an export job's status, as `exports.ExportJobs` keeps
it in the `export_jobs` table and the API serves it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.audit.ledger.read_models import SignedHead


class ExportModel(BaseModel):
    name: str
    version: str | None


class ExportScope(BaseModel):
    """What an export covers: a period, and optionally a model and a subject."""

    model_config = ConfigDict(populate_by_name=True)

    project: str
    from_: str | None = Field(alias="from", description="Start of the period (inclusive)")
    to: str | None = Field(description="End of the period (exclusive)")
    model: ExportModel | None
    subject: str | None


class ExportProgress(BaseModel):
    done: int
    total: int


class BundleFile(BaseModel):
    bytes: int
    sha256: str
    uri: str | None = Field(
        default=None, description="Where MLflow's artifact store keeps it (the export's run)"
    )
    file: str | None = Field(
        default=None,
        description="Where `warden export` wrote it (a file of the machine that ran it); "
        "such a bundle is not kept by the service: no download",
    )


class ExportStatus(BaseModel):
    """An export job: queued, running, done or failed, and what it produced."""

    id: str
    project: str
    scope: ExportScope
    status: str = Field(description="queued, running, done or failed")
    progress: ExportProgress
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    requested_by: str
    bundle: BundleFile | None = None
    counts: dict[str, int] | None = Field(default=None, description="Records per kind")
    anchor: SignedHead | None = Field(default=None, description="The head the bundle proves")
    mlflow_run_id: str | None = None
    mlflow_note: str | None = None
    ledger_seq: int | None = Field(default=None, description="Its `export.produced` event")
    download: str | None = Field(description="The bundle's path once done")
