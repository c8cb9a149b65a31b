"""An experiment's results: every arm against the control on every KPI, the sample-ratio
check, the verdicts; stored on the experiment, written back to MLflow, offered to the
`deploy` policies as evidence about a model version.

- `refresh(engine, project_id, name)` computes and stores the results of one experiment
  (`experiments.results`, `results_at`); `GET /v1/experiments/{name}` and `ResultsWorker`
  call it.
- A treatment arm's verdict is decided on the primary KPI: `better`, `worse`, `inconclusive`,
  or `invalid: SRM` when the assignment counts do not match the weights (then no comparison
  is trusted). Guardrails found worse are listed as breached whatever the verdict.
- `log_to_mlflow` writes one `warden.result = experiment` run per treatment arm.
- `evidence(engine, project_id, name, version)` is what the experiments found about a model
  version, for the deploy gate's context (`candidate.experiments`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select, update

from app.daemons import PeriodicWorker
from app.errors import NotFound
from app.experiments import analysis, kpis
from app.experiments import settings as experiment_settings
from app.experiments.kpis import KpiReport, Selection
from app.metrics import Metrics
from app.registry import mlflow_results
from app.store import leadership
from app.store.engine import read_connection, write_transaction
from app.store.tables import Experiment, Project

log = logging.getLogger("warden.experiments")

RESULT_KIND = "experiment"
EXPERIMENT_TAG = "warden.experiment"
ARM_TAG = "warden.experiment.arm"
VERDICT_TAG = "warden.experiment.verdict"
# The KPIs compared for every experiment, whatever its primary KPI and guardrails.
COMPARED = tuple(k for k in kpis.KPIS if k != kpis.SHADOW_AGREEMENT)
# Curves: hourly points for an experiment of up to a week, daily after that.
_HOUR = 3600
_DAY = 86_400
# Written to MLflow again at least this often while verdicts stay the same.
MLFLOW_EVERY_SECONDS = 3600.0


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str


def model_of_uri(uri: str) -> ModelRef | None:
    """`models:/name/version` as a name and version (None for an alias or another form).

    >>> model_of_uri("models:/booking-world-model/4")
    ModelRef(name='booking-world-model', version='4')
    >>> model_of_uri("models:/booking-world-model@champion") is None
    True
    """
    path = uri.removeprefix("models:/")
    if path == uri or "@" in path or "/" not in path:
        return None
    name, _, version = path.rpartition("/")
    return ModelRef(name, version) if name and version else None


@dataclass(frozen=True)
class StoredExperiment:
    """What the results read of an `experiments` row."""

    id: int
    name: str
    stage: str
    unit: str
    arms: list[Any]
    primary_kpi: str
    guardrails: list[Any]
    status: str
    starts_at: datetime
    stopped_at: datetime | None
    results: dict[str, Any]


def load_experiment(conn: Connection, project_id: int, name: str) -> StoredExperiment:
    """The experiment `name` of the project (404 when there is none)."""
    columns = [getattr(Experiment, f.name) for f in fields(StoredExperiment)]
    row = conn.execute(
        select(*columns).where(Experiment.project_id == project_id, Experiment.name == name)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no experiment {name!r} in this project")
    return StoredExperiment(**row._mapping)


def _bucket(row: StoredExperiment, now: datetime) -> int:
    end = row.stopped_at or now
    return _HOUR if (end - row.starts_at).total_seconds() <= 7 * _DAY else _DAY


def _ns(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp() * 1_000_000_000)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _comparison_json(found: analysis.Comparison) -> dict[str, Any]:
    return {
        "difference": _finite(found.difference),
        "ci_low": _finite(found.ci_low),
        "ci_high": _finite(found.ci_high),
        "p_value": _finite(found.p_value),
        "verdict": found.verdict,
    }


def analyse(row: StoredExperiment, report: KpiReport, now: datetime) -> dict[str, Any]:
    """The results document of `row` from its KPI report (pure: no database)."""
    arms = [str(a["name"]) for a in row.arms]
    control = arms[0]
    weights = {str(a["name"]): float(a.get("weight", 1.0)) for a in row.arms}
    counts = {arm: report.groups[arm].values.n if arm in report.groups else 0 for arm in arms}
    ratio = analysis.srm(counts, weights)
    primary = row.primary_kpi
    guardrails = [str(g) for g in row.guardrails]
    empty = kpis.GroupKpis(values=kpis.KpiValues(n=0), units={})
    base = report.groups.get(control, empty)
    out_arms: dict[str, Any] = {}
    for arm in arms:
        group = report.groups.get(arm, empty)
        entry: dict[str, Any] = {
            "n": group.values.n,
            "kpis": group.values.model_dump(),
            "served": group.served,
        }
        if arm != control:
            comparisons = {kpi: _comparison_json(_compare(base, group, kpi)) for kpi in COMPARED}
            worse = sorted(k for k, c in comparisons.items() if c["verdict"] == "worse")
            better = sorted(k for k, c in comparisons.items() if c["verdict"] == "better")
            primary_verdict = comparisons.get(primary, {}).get("verdict", "inconclusive")
            breached = [g for g in guardrails if g in worse]
            entry |= {
                "comparisons": comparisons,
                "verdict": analysis.INVALID_SRM if ratio.mismatch else primary_verdict,
                "worse_on": [] if ratio.mismatch else worse,
                "better_on": [] if ratio.mismatch else better,
                "guardrails_breached": [] if ratio.mismatch else breached,
            }
        out_arms[arm] = entry
    shadows = {
        arm: {
            "runs": found.runs,
            "compared": found.compared,
            "agreement": found.rate,
            "disagreements": [d.model_dump() for d in found.disagreements],
        }
        for arm, found in report.shadows.items()
    }
    return {
        "computed_at": now.isoformat(),
        "control": control,
        "primary_kpi": primary,
        "guardrails": guardrails,
        "srm": {
            "counts": counts,
            "expected": ratio.expected,
            "p_value": _finite(ratio.p_value),
            "mismatch": ratio.mismatch,
        },
        "arms": out_arms,
        "shadows": shadows,
        "series": _curves(report, control, [primary, *guardrails]),
    }


def _compare(control: kpis.GroupKpis, treatment: kpis.GroupKpis, kpi: str) -> analysis.Comparison:
    unit = kpis.UNIT_OF[kpi]
    empty = kpis.UnitSummary(n=0, mean=0.0, variance=0.0)
    return _compared(
        control.units.get(unit, empty), treatment.units.get(unit, empty),
        kpi in kpis.HIGHER_IS_BETTER,
    )  # fmt: skip


def _compared(
    control: kpis.UnitSummary, treatment: kpis.UnitSummary, higher_is_better: bool
) -> analysis.Comparison:
    """The comparison, or none (inconclusive) while an arm has fewer than two measures."""
    if control.n < 2 or treatment.n < 2:
        return analysis.Comparison(
            difference=treatment.mean - control.mean, ci_low=-math.inf, ci_high=math.inf,
            p_value=1.0, verdict="inconclusive",
        )  # fmt: skip
    return analysis.compare(control.arm(), treatment.arm(), higher_is_better=higher_is_better)


def _curves(report: KpiReport, control: str, wanted: list[str]) -> dict[str, Any]:
    """Per KPI of `wanted`: each arm's cumulative mean per time bucket, and each treatment's
    difference from the control with its (always-valid) interval at that time."""
    units = sorted({kpis.UNIT_OF[k] for k in wanted if k in kpis.UNIT_OF})
    points: dict[int, dict[str, dict[str, kpis.UnitSummary]]] = {}
    for arm, group in report.groups.items():
        for step in group.series:
            points.setdefault(step.until, {})[arm] = step.units
    latest: dict[str, dict[str, kpis.UnitSummary]] = {}
    curves: dict[str, list[dict[str, Any]]] = {unit: [] for unit in units}
    for until in sorted(points):
        latest |= points[until]  # an arm without requests in a bucket keeps its last totals
        for unit in units:
            point: dict[str, Any] = {"until": until, "arms": {}, "differences": {}}
            for arm, summaries in latest.items():
                found = summaries.get(unit)
                if found is not None:
                    point["arms"][arm] = {"n": found.n, "mean": found.mean}
            base = latest.get(control, {}).get(unit)
            for arm, summaries in latest.items():
                found = summaries.get(unit)
                if arm == control or base is None or found is None:
                    continue
                compared = _compared(base, found, unit in kpis.HIGHER_IS_BETTER)
                point["differences"][arm] = _comparison_json(compared)
            curves[unit].append(point)
    return curves


def refresh(engine: Engine, project_id: int, name: str) -> dict[str, Any]:
    """Compute the experiment's results now and store them; returns them."""
    now = datetime.now(UTC)
    with read_connection(engine) as conn:
        row = load_experiment(conn, project_id, name)
        config = experiment_settings.read(conn, project_id)
        selection = Selection(
            experiment=row.name, role=row.stage, since=_ns(row.starts_at),
            until=_ns(row.stopped_at),
        )  # fmt: skip
        report = kpis.compute(conn, project_id, selection, config, _bucket(row, now))
    results = analyse(row, report, now)
    results["mlflow"] = (row.results or {}).get("mlflow", {})
    with write_transaction(engine) as conn:
        conn.execute(
            update(Experiment)
            .where(Experiment.id == row.id)
            .values(results=orjson.loads(orjson.dumps(results)), results_at=now)
        )
    return results


def _treatment_model(arm: dict[str, Any], served: dict[str, int]) -> ModelRef:
    """The version the arm served most (its configured URI may be an alias)."""
    if served:
        name, _, version = max(served.items(), key=lambda item: item[1])[0].rpartition("/")
        return ModelRef(name, version)
    return model_of_uri(str(arm.get("model", ""))) or ModelRef(str(arm.get("model", "")), "")


def log_to_mlflow(tracking_uri: str, project: str, row: StoredExperiment) -> list[str]:
    """One `warden.result = experiment` run per treatment arm of the stored results."""
    results = row.results or {}
    run_ids = []
    for arm in row.arms[1:]:
        found = results.get("arms", {}).get(str(arm["name"]))
        if not found:
            continue
        model = _treatment_model(arm, found.get("served", {}))
        metrics: dict[str, float] = {
            "n.control": float(results["arms"][results["control"]]["n"]),
            "n.treatment": float(found["n"]),
        }
        if results["srm"]["p_value"] is not None:
            metrics["srm.p_value"] = float(results["srm"]["p_value"])
        tags = {
            EXPERIMENT_TAG: row.name,
            ARM_TAG: str(arm["name"]),
            VERDICT_TAG: str(found["verdict"]),
            "warden.experiment.control": str(results["control"]),
            "warden.experiment.primary_kpi": row.primary_kpi,
            "warden.experiment.guardrails_breached": ",".join(found["guardrails_breached"]),
        }
        for kpi, compared in found["comparisons"].items():
            tags[f"warden.verdict.{kpi}"] = str(compared["verdict"])
            for figure in ("difference", "ci_low", "ci_high", "p_value"):
                if compared[figure] is not None:
                    metrics[f"{kpi}.{figure}"] = float(compared[figure])
            for side, source in (
                ("control", results["arms"][results["control"]]),
                ("treatment", found),
            ):
                value = source["kpis"].get(kpi)
                if value is not None:
                    metrics[f"{kpi}.{side}"] = float(value)
        run_ids.append(
            mlflow_results.log_result(
                tracking_uri,
                mlflow_results.Result(
                    kind=RESULT_KIND, project=project, model_name=model.name,
                    model_version=model.version, name=f"experiment-{row.name}-{arm['name']}",
                    params={"experiment": row.name, "stage": row.stage, "arm": str(arm["name"]),
                            "control": str(results["control"]), "unit": row.unit},
                    metrics=metrics, tags=tags,
                    artifacts={"experiment/results.json": orjson.dumps(
                        {k: v for k, v in results.items() if k != "series"},
                        option=orjson.OPT_INDENT_2).decode()},
                ),
            )
        )  # fmt: skip
    return run_ids


def _verdicts(results: dict[str, Any]) -> dict[str, str]:
    return {arm: str(a.get("verdict", "")) for arm, a in (results.get("arms") or {}).items()}


def refresh_and_log(engine: Engine, tracking_uri: str, project_id: int, name: str) -> list[str]:
    """Refresh the results; write them to MLflow when a verdict changed, when the last run is
    older than `MLFLOW_EVERY_SECONDS`, or once the experiment has stopped. Returns run ids."""
    with read_connection(engine) as conn:
        before = conn.execute(
            select(Experiment.results).where(
                Experiment.project_id == project_id, Experiment.name == name
            )
        ).scalar_one_or_none()
    logged = (before or {}).get("mlflow", {})
    results = refresh(engine, project_id, name)
    with read_connection(engine) as conn:
        row = load_experiment(conn, project_id, name)
        project = conn.execute(select(Project.name).where(Project.id == project_id)).scalar_one()
    now = datetime.now(UTC).timestamp()
    due = (
        logged.get("verdicts") != _verdicts(results)
        or now - float(logged.get("at", 0)) >= MLFLOW_EVERY_SECONDS
        or (row.status == "stopped" and not logged.get("final"))
    )
    if not due:
        return []
    run_ids = log_to_mlflow(tracking_uri, project, row)
    mark = {"at": now, "verdicts": _verdicts(results), "run_ids": run_ids,
            "final": row.status == "stopped"}  # fmt: skip
    with write_transaction(engine) as conn:
        conn.execute(
            update(Experiment)
            .where(Experiment.id == row.id)
            .values(results={**results, "mlflow": mark})
        )
    return run_ids


def evidence(
    engine: Engine, project_id: int, name: str, version: str, fresh: bool = True
) -> list[dict[str, Any]]:
    """What the project's experiments found about model `name` at `version` (as a treatment
    arm), for the `deploy` policies (docs/experiments.md). With `fresh`, the running
    experiments' results are refreshed first: a promotion is judged on all traffic so far,
    not on what the worker last stored."""
    key = f"{name}/{version}"
    if fresh:
        with read_connection(engine) as conn:
            running = (
                conn.execute(
                    select(Experiment.name).where(
                        Experiment.project_id == project_id, Experiment.status == "running"
                    )
                )
                .scalars()
                .all()
            )
        for experiment in running:
            refresh(engine, project_id, experiment)
    with read_connection(engine) as conn:
        rows = conn.execute(
            select(Experiment.name, Experiment.arms, Experiment.results, Experiment.primary_kpi)
            .where(Experiment.project_id == project_id)
            .order_by(Experiment.created_at, Experiment.id)
        ).all()
    found = []
    for experiment, arms, results, primary in rows:
        stored = (results or {}).get("arms") or {}
        for arm in arms[1:]:
            entry = stored.get(str(arm["name"]))
            if not entry:
                continue
            named = model_of_uri(str(arm.get("model", "")))
            served = entry.get("served") or {}
            if key not in served and named != ModelRef(name, version):
                continue
            found.append(
                {
                    "name": experiment,
                    "arm": str(arm["name"]),
                    "verdict": entry.get("verdict", "inconclusive"),
                    "primary_kpi": primary,
                    "worse_on": entry.get("worse_on", []),
                    "better_on": entry.get("better_on", []),
                    "guardrails_breached": entry.get("guardrails_breached", []),
                    "guardrail_breached": bool(entry.get("guardrails_breached")),
                    "n": entry.get("n", 0),
                }
            )
    return found


class ResultsWorker(PeriodicWorker):
    """Refreshes the results of every running experiment (and, once, of each newly stopped
    one) every `interval` seconds, and writes them back to MLflow."""

    def __init__(
        self, engine: Engine, tracking_uri: str, interval: float, metrics: Metrics | None = None
    ) -> None:
        name = "experiments"
        super().__init__(name, interval, leadership.for_engine(engine, name), metrics)
        self.engine = engine
        self.tracking_uri = tracking_uri

    def tick(self) -> None:
        with read_connection(self.engine) as conn:
            due = conn.execute(
                select(Experiment.project_id, Experiment.name, Experiment.status,
                       Experiment.stopped_at, Experiment.results_at)
            ).all()  # fmt: skip
        for project_id, name, status, stopped_at, results_at in due:
            if self.stopping:
                return
            final_pending = (
                status == "stopped"
                and stopped_at is not None
                and (results_at is None or results_at <= stopped_at)
            )
            if status != "running" and not final_pending:
                continue
            try:
                refresh_and_log(self.engine, self.tracking_uri, project_id, name)
            except Exception:
                log.exception("results of experiment %s could not be refreshed", name)
