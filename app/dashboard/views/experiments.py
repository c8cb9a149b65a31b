"""The experiments pages: the project's experiments with their verdicts, and one experiment
with its arms side by side on every KPI, the sample-ratio warning, its curves, its shadow
arms' disagreements and the guardrails breached.

Results are the stored analysis (`experiments.results`), read through `configs.get`, which
computes them again first when there are none, when a running experiment's are older than
`configs.RESULTS_MAX_AGE_SECONDS`, or when a stopped one has not been analysed since it
stopped: `results.refresh` reads the experiment's requests once per table, and the service's
`experiments` job refreshes running experiments every few minutes anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from app.dashboard.views.experiment_charts import CurveChart, curves
from app.experiments import configs, kpis, results
from app.experiments.analysis import BETTER, INCONCLUSIVE, INVALID_SRM, WORSE
from app.experiments.read_models import (
    ArmResult,
    ComparisonResult,
    ExperimentDetail,
    ExperimentOut,
    ExperimentResults,
    stored_results,
)
from app.store.engine import read_connection
from app.store.tables import Experiment

MINUS = "\u2212"  # the typographic minus, as wide as "+"
# The KPIs in the order the page lists them, and how each reads.
KPI_ORDER = (*results.COMPARED,)
_CSS = {BETTER: "better", WORSE: "worse", INCONCLUSIVE: "inconclusive", INVALID_SRM: "srm"}


def verdict_class(verdict: str | None) -> str:
    """The badge class of a verdict (`invalid: SRM` is no CSS class name)."""
    return _CSS.get(verdict or "", "inconclusive")


def show_value(kpi: str, value: float | None, difference: bool = False) -> str:
    """A KPI's value (or a difference of two) as the page prints it."""
    if value is None:
        return "—"
    sign = "+" if difference and value > 0 else (MINUS if difference and value < 0 else "")
    size = abs(value) if difference else value
    if kpi.endswith("_rate"):
        return f"{sign}{100 * size:.1f} pp" if difference else f"{100 * size:.1f}%"
    if kpi.endswith("_ms"):
        return f"{sign}{size:.1f} ms"
    return f"{sign}{size:.4g}"


@dataclass(frozen=True)
class ListedExperiment:
    experiment: ExperimentOut
    verdicts: dict[str, str]  # treatment arm -> verdict
    srm: bool
    computed_at: datetime | None


@dataclass(frozen=True)
class ExperimentsPage:
    items: list[ListedExperiment]


def stored(
    engine: Engine, project_id: int, status: str | None = None
) -> dict[str, ExperimentResults]:
    """The stored results of the project's experiments (of one `status`) that have some."""
    query = select(Experiment.name, Experiment.results).where(Experiment.project_id == project_id)
    if status is not None:
        query = query.where(Experiment.status == status)
    with read_connection(engine) as conn:
        rows = conn.execute(query).all()
    found = {}
    for name, document in rows:
        typed = stored_results(document)
        if typed is not None:
            found[name] = typed
    return found


def listed(experiment: ExperimentOut, found: ExperimentResults | None) -> ListedExperiment:
    verdicts = {n: a.verdict or INCONCLUSIVE for n, a in found.treatments()} if found else {}
    return ListedExperiment(
        experiment=experiment,
        verdicts=verdicts,
        srm=bool(found and found.srm.mismatch),
        computed_at=found.computed_at if found else None,
    )


def experiments_page(engine: Engine, project_id: int) -> ExperimentsPage:
    found = stored(engine, project_id)
    return ExperimentsPage(
        [listed(e, found.get(e.name)) for e in configs.list_experiments(engine, project_id)]
    )


@dataclass(frozen=True)
class Cell:
    """One KPI of one arm: its value and, for a treatment, the comparison with the control."""

    value: str
    difference: str = ""
    interval: str = ""
    verdict: str | None = None

    @property
    def css(self) -> str:
        return verdict_class(self.verdict)


@dataclass(frozen=True)
class KpiRow:
    kpi: str
    primary: bool
    guardrail: bool
    cells: list[Cell]  # one per arm, in the arms' order


@dataclass(frozen=True)
class ArmColumn:
    name: str
    model: str
    weight: float
    share: float  # the weight's share of all weights
    requests: int
    control: bool
    verdict: str | None
    served: dict[str, int]
    breached: list[str]

    @property
    def css(self) -> str:
        return verdict_class(self.verdict)


@dataclass(frozen=True)
class ExperimentPage:
    experiment: ExperimentDetail
    results: ExperimentResults | None
    refreshed: bool  # computed for this view
    arms: list[ArmColumn]
    rows: list[KpiRow]
    charts: list[CurveChart]


def _cell(kpi: str, arm: ArmResult, control: bool) -> Cell:
    value = show_value(kpi, getattr(arm.kpis, kpi, None))
    if control or arm.comparisons is None:
        return Cell(value)
    compared = arm.comparisons.get(kpi) or ComparisonResult()
    return Cell(
        value=value,
        difference=show_value(kpi, compared.difference, difference=True),
        interval=_interval(kpi, compared),
        verdict=compared.verdict,
    )


def _interval(kpi: str, compared: ComparisonResult) -> str:
    if compared.ci_low is None or compared.ci_high is None:
        # An unbounded interval: too few requests in an arm, or no variation in either
        # (e.g. no request denied on either side), so the data say nothing yet.
        return "(no interval: too few requests or no variation)"
    low = show_value(kpi, compared.ci_low, difference=True)
    high = show_value(kpi, compared.ci_high, difference=True)
    return f"[{low}, {high}]"


def experiment_page(engine: Engine, project_id: int, name: str) -> ExperimentPage:
    """The page of experiment `name` (404 when the project has none), its results
    recomputed first when they are missing or stale (see the module)."""
    with read_connection(engine) as conn:
        before = conn.execute(
            select(Experiment.results_at).where(
                Experiment.project_id == project_id, Experiment.name == name
            )
        ).scalar_one_or_none()
    # `configs.get` computes the results again when they are missing or stale: the one
    # freshness rule the API, the CLI and the pages share.
    detail = configs.get(engine, project_id, name)
    found = stored_results(detail.results)
    refreshed = found is not None and (before is None or found.computed_at > before)
    detail = detail.model_copy(update={"results": found})
    weights = sum(a.weight for a in detail.arms) or 1.0
    arms_found: dict[str, Any] = found.arms if found else {}
    control = found.control if found else detail.arms[0].name
    columns = []
    for arm in detail.arms:
        result = arms_found.get(arm.name) or ArmResult()
        columns.append(
            ArmColumn(
                name=arm.name, model=arm.model, weight=arm.weight, share=arm.weight / weights,
                requests=detail.counts.get(arm.name, result.n), control=arm.name == control,
                verdict=result.verdict, served=result.served,
                breached=result.guardrails_breached or [],
            )
        )  # fmt: skip
    rows = []
    if found is not None:
        for kpi in KPI_ORDER:
            cells = [
                _cell(kpi, arms_found.get(c.name) or ArmResult(), c.control) for c in columns
            ]
            rows.append(KpiRow(kpi, kpi == found.primary_kpi, kpi in found.guardrails, cells))
    charts: list[CurveChart] = []
    if found is not None:
        wanted = [found.primary_kpi, *found.guardrails]
        measures = list(dict.fromkeys(kpis.UNIT_OF.get(k, k) for k in wanted))
        for measure in measures:
            charts += curves(
                measure, found.series.get(measure, []), [c.name for c in columns], control
            )
    return ExperimentPage(
        experiment=detail,
        results=found,
        refreshed=refreshed,
        arms=columns,
        rows=rows,
        charts=charts,
    )
