"""Drift reports of one model version as chart series: each input feature's score, each
latent layer's p-value and MMD², each decision test's adjusted p-value, over time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.drift.read_models import StoredDriftReport


def _when(report: StoredDriftReport) -> int:
    return int(datetime.fromisoformat(report.created_at).timestamp())


def _series(
    reports: list[StoredDriftReport], pick: Any, names: list[str]
) -> tuple[list[int], list[dict[str, Any]]]:
    xs = [_when(r) for r in reports]
    values: dict[str, list[float | None]] = {n: [] for n in names}
    for r in reports:
        found = pick(r.scores)
        for n in names:
            v = found.get(n)
            values[n].append(float(v) if isinstance(v, int | float) else None)
    return xs, [{"label": n, "values": values[n]} for n in names]


def charts(reports: list[StoredDriftReport]) -> dict[str, dict[str, Any]]:
    """Chart specs (warden.js) of a version's reports (any order), one per kind present."""
    ordered = sorted(reports, key=lambda r: (r.created_at, r.id))
    out: dict[str, dict[str, Any]] = {}
    inputs = [r for r in ordered if r.kind == "input"]
    if inputs:
        names = sorted({c["column"] for r in inputs for c in r.scores.get("columns", [])})
        xs, series = _series(
            inputs,
            lambda s: {c["column"]: c.get("drift_score") for c in s.get("columns", [])},
            names,
        )
        tests = {c["column"]: c.get("stattest_name") for r in inputs
                 for c in r.scores.get("columns", [])}  # fmt: skip
        for s in series:
            s["label"] = f"{s['label']} ({tests.get(s['label']) or 'score'})"
        out["input"] = {"x": xs, "time": True, "yLabel": "drift score", "series": series}
    latent = [r for r in ordered if r.kind == "latent"]
    if latent:
        layers = sorted({k for r in latent for k in r.scores.get("layers", {})})
        xs, p_values = _series(
            latent,
            lambda s: {k: v.get("p_value") for k, v in s.get("layers", {}).items()},
            layers,
        )
        _, mmd = _series(
            latent, lambda s: {k: v.get("mmd2") for k, v in s.get("layers", {}).items()}, layers
        )
        for s in p_values:
            s["label"] = f"{s['label']} p-value"
        for s in mmd:
            s.update(label=f"{s['label']} MMD²", scale="y2")
        out["latent"] = {"x": xs, "time": True, "yLabel": "p-value", "y2Label": "MMD²",
                         "series": p_values + mmd}  # fmt: skip
    decisions = [r for r in ordered if r.kind == "decision"]
    if decisions:
        names = sorted({t["name"] for r in decisions for t in r.scores.get("tests", [])})
        xs, series = _series(
            decisions,
            lambda s: {t["name"]: t.get("adjusted_p") for t in s.get("tests", [])},
            names,
        )
        out["decision"] = {"x": xs, "time": True, "yLabel": "adjusted p-value",
                           "series": series}  # fmt: skip
    return out


def jobs(reports: list[StoredDriftReport]) -> list[dict[str, Any]]:
    """Reports grouped by drift job, newest first: window, verdict per kind, MLflow run."""
    grouped: dict[str, dict[str, Any]] = {}
    for r in sorted(reports, key=lambda r: (r.created_at, r.id), reverse=True):
        job = grouped.setdefault(r.job_id or str(r.id), {
            "job_id": r.job_id, "created_at": r.created_at,
            "start": r.window_start_unix_nano, "end": r.window_end_unix_nano,
            "run_id": r.mlflow_run_id, "kinds": {}, "reports": {},
        })  # fmt: skip
        job["kinds"][r.kind] = r.verdict
        job["reports"][r.kind] = r
    return list(grouped.values())
