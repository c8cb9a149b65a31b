"""Typed read models of drift: stored reports (`reports`) and the result of a drift job run
now (`job.JobResult.to_json`).

Scores and references differ per kind (input columns, latent layers, decision tests; a
training dataset or a traffic window), so they stay JSON objects; docs/drift.md describes
them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StoredDriftReport(BaseModel):
    """One kind's judgement of one model version's window, as stored."""

    id: int
    job_id: str | None = Field(description="The reports of one drift job share it")
    model_name: str
    model_version: str
    kind: str = Field(description="input, latent or decision")
    verdict: str = Field(description="none, warn or drift")
    window_start_unix_nano: int
    window_end_unix_nano: int
    reference: dict[str, Any]
    scores: dict[str, Any]
    mlflow_run_id: str | None
    created_at: str = Field(description="ISO 8601")


class DriftWindow(BaseModel):
    """A drift job's current window of one model version, and its verdict per kind: what
    the requests of the window are looked up by."""

    id: int = Field(description="The id of the (newest) report of the window")
    job_id: str | None
    model_name: str
    model_version: str
    window_start_unix_nano: int
    window_end_unix_nano: int
    verdicts: dict[str, str] = Field(description="Verdict per kind")


class DriftReportPage(BaseModel):
    items: list[StoredDriftReport]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end"
    )


class WindowOut(BaseModel):
    start_unix_nano: int
    end_unix_nano: int
    requests: int


class KindReportOut(BaseModel):
    kind: str
    verdict: str
    share_drifted: float
    current: WindowOut
    reference: dict[str, Any]
    scores: dict[str, Any]


class DriftVerdictOut(BaseModel):
    policy_id: str
    version: str
    effect: str
    fired: bool
    message: str


class DriftRollback(BaseModel):
    """An alias a `drift` policy moved back."""

    model_config = ConfigDict(populate_by_name=True)

    alias: str
    from_: str | None = Field(alias="from")
    to: str | None
    kind: str


class VersionResultOut(BaseModel):
    """A drift job's result for one model version."""

    job_id: str
    model_name: str
    model_version: str
    verdict: str = Field(description="The most severe of its kinds")
    reports: list[KindReportOut]
    skipped: dict[str, str] = Field(description="Kinds (or policy rounds) not judged, and why")
    mlflow_run_id: str | None
    policies: dict[str, list[DriftVerdictOut]] = Field(
        description="The drift policies' verdicts per kind"
    )
    rollbacks: list[DriftRollback]
    alerted: bool | None = Field(description="Whether the alert webhook took it; null if none")
    seconds: dict[str, float] = Field(description="Wall seconds per phase of the job")


class DriftJobOut(BaseModel):
    project: str
    versions: list[VersionResultOut]
