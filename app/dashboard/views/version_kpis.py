"""Decision KPIs per model version for the models page and the overview: one
`kpis.compute` per model name (each version of it a group), and promotions and rollbacks per
model from the deploy gate's record."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine

from app.experiments import kpis
from app.experiments import settings as experiment_settings
from app.experiments.kpis import KpiValues, ModelDeployments, Selection
from app.store.engine import read_connection

# The KPIs a version's row shows, in order.
SHOWN = (
    kpis.PLAN_SUCCESS, kpis.DENY, kpis.REVIEW, kpis.CORRECTION, kpis.ESCALATION,
    kpis.LATENCY_P50, kpis.LATENCY_P95, kpis.COST, kpis.OOD,
)  # fmt: skip


@dataclass(frozen=True)
class VersionKpis:
    """The KPIs of each version of the models asked for, keyed by (name, version), and the
    alias moves per model name."""

    values: dict[tuple[str, str], KpiValues]
    deployments: dict[str, ModelDeployments]


def version_kpis(
    engine: Engine,
    project_id: int,
    models: Iterable[tuple[str, str | None]],
    since_ns: int | None = None,
) -> VersionKpis:
    """KPIs of every version of each (model name, role) in `models`, over requests started
    from `since_ns` (all of them without it)."""
    wanted = sorted(set(models), key=lambda m: (m[0], m[1] or ""))
    values: dict[tuple[str, str], KpiValues] = {}
    with read_connection(engine) as conn:
        config = experiment_settings.read(conn, project_id)
        for name, role in wanted:
            selection = Selection(model_name=name, role=role, since=since_ns)
            report = kpis.compute(conn, project_id, selection, config)
            for version, group in report.groups.items():
                values[(name, version)] = group.values
        moves = kpis.deployments_per_model(conn, project_id, [n for n, _ in wanted])
    return VersionKpis(values, {m.model_name: m for m in moves})
