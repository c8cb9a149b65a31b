"""What a drift job answers: a report per kind judged, per model version, per job; and the
wall seconds each phase of a version's job took."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from app.drift.detectors.protocol import Verdict, worst
from app.drift.windows import Bounds


@dataclass
class KindReport:
    """One kind's verdict on a version's current window, against the reference described."""

    kind: str
    verdict: Verdict
    share_drifted: float
    scores: dict[str, Any]
    reference: dict[str, Any]
    current: Bounds
    current_requests: int

    def policy_context(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "verdict": self.verdict,
            "share_drifted": self.share_drifted,
            "scores": self.scores,
        }


@dataclass
class VersionResult:
    model_name: str
    model_version: str
    job_id: str
    reports: list[KindReport] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    policy_verdicts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rollbacks: list[dict[str, Any]] = field(default_factory=list)
    alerted: bool | None = None
    # Wall seconds per phase of the job: load, one per kind, mlflow, ...
    seconds: dict[str, float] = field(default_factory=dict)
    # Reports for people by artifact path (drift/inputs.html), logged to MLflow only.
    artifacts: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def verdict(self) -> Verdict:
        return worst(r.verdict for r in self.reports)

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "verdict": self.verdict,
            "reports": [
                {
                    "kind": r.kind,
                    "verdict": r.verdict,
                    "share_drifted": r.share_drifted,
                    "current": {
                        "start_unix_nano": r.current.start,
                        "end_unix_nano": r.current.end,
                        "requests": r.current_requests,
                    },
                    "reference": r.reference,
                    "scores": r.scores,
                }
                for r in self.reports
            ],
            "skipped": self.skipped,
            "mlflow_run_id": self.mlflow_run_id,
            "policies": self.policy_verdicts,
            "rollbacks": self.rollbacks,
            "alerted": self.alerted,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


@dataclass
class JobResult:
    project: str
    versions: list[VersionResult]

    def to_json(self) -> dict[str, Any]:
        return {"project": self.project, "versions": [v.to_json() for v in self.versions]}


class Clock:
    """Adds the wall seconds since its last lap to a phase of `into`."""

    def __init__(self, into: dict[str, float]) -> None:
        self.into = into
        self.last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.into[phase] = self.into.get(phase, 0.0) + now - self.last
        self.last = now
