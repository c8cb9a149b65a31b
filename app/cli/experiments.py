"""`warden experiment`: create, list, show and stop experiments (A/B splits and shadow arms
between model versions of one stage), on the configured database like the other groups."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.table import Table

from app.cli.resources import database, err, out
from app.experiments import configs
from app.experiments.read_models import ArmSpec, ExperimentOut, ExperimentSpec, ShadowSpec
from app.tenancy import projects

experiment_app = typer.Typer(
    help="Experiments: split a stage's traffic between model versions (arms), run candidates "
    "in the shadow of the live answer, judge them on decision KPIs (docs/experiments.md).",
    no_args_is_help=True,
)

ProjectOption = Annotated[str, typer.Option(help="The experiment's project")]


def _refuse(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


def _split(option: str, value: str, number: str) -> tuple[str, str, float | None]:
    """`NAME=MODEL[:NUMBER]`; the model itself holds a ':' (models:/...), so a number is only
    what follows the last ':' when it reads as one."""
    name, sep, rest = value.partition("=")
    if not sep or not name or not rest:
        raise _refuse(f"{option} {value!r}: write NAME=MODEL[:{number}], e.g. v2=models:/wm/2")
    model, _, tail = rest.rpartition(":")
    if model.startswith("models:") and tail:
        try:
            return name, model, float(tail)
        except ValueError:
            pass
    return name, rest, None


def create(
    name: Annotated[str, typer.Argument(help="A slug, unique in the project, e.g. wm-v2")],
    stage: Annotated[str, typer.Option(help="The stage it varies: world_model or planner")],
    arm: Annotated[
        list[str],
        typer.Option(help="NAME=MODEL[:WEIGHT], at least two; the first is the control"),
    ],
    shadow: Annotated[
        list[str] | None,
        typer.Option(help="NAME=MODEL[:RATE]: run on a RATE share of requests, never returned"),
    ] = None,
    unit: Annotated[
        str, typer.Option(help="subject (sticky: a person keeps an arm) or request")
    ] = "subject",
    primary: Annotated[str, typer.Option(help="The KPI that decides")] = "plan_success_rate",
    guardrail: Annotated[
        list[str] | None, typer.Option(help="A KPI that must not get worse; repeat for several")
    ] = None,
    description: Annotated[str | None, typer.Option(help="What it tests, for people")] = None,
    salt: Annotated[
        str | None, typer.Option(help="Mixed into the assignment hash (default: random)")
    ] = None,
    project: ProjectOption = "default",
) -> None:
    """Start an experiment; SDKs with the service's bundle assign requests from their next
    refresh. KPIs: plan_success_rate, deny_rate, review_rate, correction_rate,
    escalation_rate, latency_p50_ms, latency_p95_ms, cost_per_inference, ood_rate,
    shadow_agreement.

    Example: [bold]warden experiment create wm-v2 --stage world_model --arm
    control=models:/booking-world-model/1 --arm v2=models:/booking-world-model/2:1 --shadow
    v3=models:/booking-world-model/3:0.1 --guardrail deny_rate[/bold]
    """
    arms = []
    for value in arm:
        arm_name, model, weight = _split("--arm", value, "WEIGHT")
        arms.append(ArmSpec(name=arm_name, model=model, weight=1.0 if weight is None else weight))
    shadows = []
    for value in shadow or ():
        shadow_name, model, rate = _split("--shadow", value, "RATE")
        shadows.append(
            ShadowSpec(name=shadow_name, model=model, sample_rate=1.0 if rate is None else rate)
        )
    spec = ExperimentSpec(
        name=name, stage=stage, arms=arms, shadows=shadows, unit=unit, primary_kpi=primary,
        guardrails=list(guardrail or ()), description=description, salt=salt,
    )  # fmt: skip
    with database() as engine:
        created = configs.create(
            engine, projects.project_id(engine, project), spec, f"cli:{getpass.getuser()}"
        )
    out.print(f"created experiment {created.name} on {created.stage}", highlight=False)
    _print_config(created)


def list_experiments(
    project: ProjectOption = "default",
    status: Annotated[str | None, typer.Option(help="running or stopped")] = None,
) -> None:
    """List the project's experiments, newest first.

    Example: [bold]warden experiment list --status running[/bold]
    """
    with database() as engine:
        items = configs.list_experiments(engine, projects.project_id(engine, project), status)
    table = Table("experiment", "stage", "status", "arms", "shadows", "primary", "started")
    for e in items:
        table.add_row(
            e.name, e.stage, e.status, ", ".join(a.name for a in e.arms),
            ", ".join(s.name for s in e.shadows) or "-", e.primary_kpi,
            e.starts_at.isoformat(timespec="seconds"),
        )  # fmt: skip
    out.print(table)


def show(
    name: Annotated[str, typer.Argument(help="The experiment's name")],
    project: ProjectOption = "default",
) -> None:
    """Print an experiment's configuration and the requests each arm served so far.

    Example: [bold]warden experiment show wm-v2[/bold]
    """
    with database() as engine:
        detail = configs.get(engine, projects.project_id(engine, project), name)
    stopped = ""
    if detail.stopped_at is not None:
        stopped = f", stopped {detail.stopped_at.isoformat(timespec='seconds')}"
    out.print(
        f"experiment {detail.name}: {detail.status} on {detail.stage}, unit {detail.unit}, "
        f"started {detail.starts_at.isoformat(timespec='seconds')}{stopped}",
        highlight=False,
    )
    _print_config(detail, detail.counts)


def stop(
    name: Annotated[str, typer.Argument(help="The experiment's name")],
    project: ProjectOption = "default",
) -> None:
    """Stop an experiment: SDKs stop assigning it from their next bundle refresh.

    Example: [bold]warden experiment stop wm-v2[/bold]
    """
    with database() as engine:
        stopped = configs.stop(
            engine, projects.project_id(engine, project), name, f"cli:{getpass.getuser()}"
        )
    out.print(f"stopped experiment {stopped.name}", highlight=False)


def _print_config(e: ExperimentOut, counts: dict[str, int] | None = None) -> None:
    columns = ["arm", "model", "weight / rate"] + (["requests"] if counts is not None else [])
    table = Table(*columns)
    for i, a in enumerate(e.arms):
        label = f"{a.name} (control)" if i == 0 else a.name
        row = [label, a.model, f"{a.weight:g}"]
        table.add_row(*row, *([str(counts.get(a.name, 0))] if counts is not None else []))
    for s in e.shadows:
        row = [f"{s.name} (shadow)", s.model, f"{s.sample_rate:g}"]
        table.add_row(*row, *(["-"] if counts is not None else []))
    out.print(table)
    guardrails = ", ".join(e.guardrails) or "none"
    out.print(f"primary KPI {e.primary_kpi}; guardrails {guardrails}", highlight=False)


experiment_app.command("create")(create)
experiment_app.command("list")(list_experiments)
experiment_app.command("show")(show)
experiment_app.command("stop")(stop)
