"""Drift reports of one model version as chart series: each input feature's test result (a
p-value or a distance, on axes of their own), each latent layer's p-value and MMD², each
decision test's adjusted p-value, over time; and the
reports grouped by the drift job that made them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.dashboard.views.charts import Chart, Series
from app.drift.read_models import StoredDriftReport

Pick = Callable[[dict[str, Any]], dict[str, Any]]  # a report's scores -> value per series
JUDGED = "judged at"
# Axis labels stay short (a chart is 220 px high); the caption under it says how to read them.
P_VALUE, DISTANCE, MMD2, ADJUSTED = "p-value", "distance", "MMD²", "adjusted p-value"
READING = {
    P_VALUE: "p-value, 0 to 1: drift when low",
    DISTANCE: "distance, normed: drift when high",
    MMD2: "MMD², squared kernel distance: drift when high",
    ADJUSTED: "adjusted p-value, 0 to 1: drift when low",
}


@dataclass
class DriftJob:
    """The reports of one drift job of a version: its window, verdict per kind, MLflow run."""

    job_id: str | None
    created_at: str
    start: int
    end: int
    run_id: str | None
    kinds: dict[str, str] = field(default_factory=dict)  # verdict per kind
    reports: dict[str, StoredDriftReport] = field(default_factory=dict)  # report per kind


def _when(report: StoredDriftReport) -> int:
    return int(datetime.fromisoformat(report.created_at).timestamp())


def _series(
    reports: list[StoredDriftReport], pick: Pick, names: list[str]
) -> tuple[list[int], list[Series]]:
    xs = [_when(r) for r in reports]
    values: dict[str, list[float | None]] = {n: [] for n in names}
    for r in reports:
        found = pick(r.scores)
        for n in names:
            v = found.get(n)
            values[n].append(float(v) if isinstance(v, int | float) else None)
    return xs, [{"label": n, "values": values[n]} for n in names]


def _input_chart(inputs: list[StoredDriftReport]) -> Chart:
    """Each input column's test result over time. Evidently's `drift_score` is a p-value for
    some tests (K-S, chi-square: drift when low) and a distance for others (Wasserstein,
    Jensen-Shannon: drift when high), so the two go on axes of their own, each series named
    with its test."""
    tests: dict[str, tuple[str, str]] = {}  # column -> (test name, score type), newest wins
    for r in inputs:
        for c in r.scores.get("columns", []):
            kind = c.get("score_type") or (
                "p_value" if "p_value" in str(c.get("stattest_name", "")) else "distance"
            )
            tests[c["column"]] = (str(c.get("stattest_name") or "test"), kind)
    names = sorted(tests)
    xs, series = _series(
        inputs,
        lambda s: {c["column"]: c.get("drift_score") for c in s.get("columns", [])},
        names,
    )
    for s in series:
        test, kind = tests[s["label"]]
        if kind == "p_value":
            s["label"] = f"{s['label']} ({test.replace('p_value', '').strip()} p-value)"
        else:
            s["label"] = f"{s['label']} ({test})"
    p_values = [s for s, n in zip(series, names, strict=True) if tests[n][1] == "p_value"]
    distances = [s for s, n in zip(series, names, strict=True) if tests[n][1] != "p_value"]
    chart: Chart = {"x": xs, "time": True, "xLabel": JUDGED, "series": p_values + distances}
    if p_values:
        chart["yLabel"] = P_VALUE
        if distances:
            for s in distances:
                s["scale"] = "y2"
            chart["y2Label"] = DISTANCE
    else:
        chart["yLabel"] = DISTANCE
    return chart


def caption(chart: Chart) -> str:
    """How to read a drift chart's axes, in words."""
    left = READING.get(chart.get("yLabel", ""), chart.get("yLabel", ""))
    right = chart.get("y2Label")
    both = f"Left axis: {left}" + (f"; right axis: {READING.get(right, right)}" if right else "")
    return f"{both}; across: when the job judged (your time zone)"


def charts(reports: list[StoredDriftReport]) -> dict[str, Chart]:
    """Charts of a version's reports (any order), one per kind present."""
    ordered = sorted(reports, key=lambda r: (r.created_at, r.id))
    out: dict[str, Chart] = {}
    inputs = [r for r in ordered if r.kind == "input"]
    if inputs:
        out["input"] = _input_chart(inputs)
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
            s["label"], s["scale"] = f"{s['label']} MMD²", "y2"
        out["latent"] = {"x": xs, "time": True, "xLabel": JUDGED, "yLabel": P_VALUE,
                         "y2Label": MMD2, "series": p_values + mmd}  # fmt: skip
    decisions = [r for r in ordered if r.kind == "decision"]
    if decisions:
        names = sorted({t["name"] for r in decisions for t in r.scores.get("tests", [])})
        xs, series = _series(
            decisions,
            lambda s: {t["name"]: t.get("adjusted_p") for t in s.get("tests", [])},
            names,
        )
        for s in series:
            s["label"] = f"{s['label']} adjusted p-value"
        out["decision"] = {"x": xs, "time": True, "xLabel": JUDGED, "yLabel": ADJUSTED,
                           "series": series}  # fmt: skip
    return out


def jobs(reports: list[StoredDriftReport]) -> list[DriftJob]:
    """Reports grouped by drift job, newest first."""
    grouped: dict[str, DriftJob] = {}
    for r in sorted(reports, key=lambda r: (r.created_at, r.id), reverse=True):
        new = DriftJob(
            r.job_id, r.created_at, r.window_start_unix_nano, r.window_end_unix_nano,
            r.mlflow_run_id,
        )
        job = grouped.setdefault(r.job_id or str(r.id), new)
        job.kinds[r.kind] = r.verdict
        job.reports[r.kind] = r
    return list(grouped.values())
