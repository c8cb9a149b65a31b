"""`warden experiment`: create, list, show and stop experiments (A/B splits and shadow arms
between model versions of one stage), on the configured database like the other groups."""

from __future__ import annotations

import getpass
from typing import Annotated, Any

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
    refresh: Annotated[
        bool, typer.Option(help="Compute the results now, however fresh the stored ones are")
    ] = False,
) -> None:
    """Print an experiment's configuration, the requests each arm served so far, and its
    results: per arm the primary KPI, the difference from the control with its interval and
    the verdict, the guardrails breached, the sample-ratio check, the shadows' agreement.

    Example: [bold]warden experiment show wm-v2 --refresh[/bold]
    """
    with database() as engine:
        detail = configs.get(engine, projects.project_id(engine, project), name, refresh=refresh)
    stopped = ""
    if detail.stopped_at is not None:
        stopped = f", stopped {detail.stopped_at.isoformat(timespec='seconds')}"
    out.print(
        f"experiment {detail.name}: {detail.status} on {detail.stage}, unit {detail.unit}, "
        f"started {detail.starts_at.isoformat(timespec='seconds')}{stopped}",
        highlight=False,
    )
    _print_config(detail, detail.counts)
    # Read by key from the JSON form: the same document the API returns.
    results = detail.model_dump(mode="json").get("results")
    if results:
        print_results(results)
    else:
        out.print("no results yet: no request was assigned to an arm", highlight=False)


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


def print_results(results: dict[str, Any]) -> None:
    """The results document of `GET /v1/experiments/{name}`, readably: one row per arm, then
    the guardrails breached, the sample-ratio check and the shadow arms' agreement."""
    primary = str(results.get("primary_kpi", "plan_success_rate"))
    control = results.get("control")
    arms: dict[str, Any] = results.get("arms") or {}
    out.print(
        f"results computed {results.get('computed_at', '?')} (primary KPI {primary}; "
        "intervals are always-valid 95%: they may be read at any time)",
        highlight=False,
    )
    table = Table("arm", "n", primary, "difference vs control [interval]", "verdict")
    for arm, found in arms.items():
        value = (found.get("kpis") or {}).get(primary)
        if arm == control:
            table.add_row(f"{arm} (control)", str(found.get("n", 0)), _value(primary, value),
                          "-", "-")  # fmt: skip
            continue
        compared = (found.get("comparisons") or {}).get(primary) or {}
        table.add_row(
            arm, str(found.get("n", 0)), _value(primary, value), _difference(primary, compared),
            str(found.get("verdict", "-")),
        )  # fmt: skip
    out.print(table)
    breached = {
        arm: found.get("guardrails_breached") or []
        for arm, found in arms.items()
        if arm != control
    }
    lines = [f"{arm}: {', '.join(kpis)}" for arm, kpis in breached.items() if kpis]
    guardrails = ", ".join(results.get("guardrails") or []) or "none set"
    out.print(
        f"guardrails ({guardrails}) breached: {'; '.join(lines) or 'none'}", highlight=False
    )
    srm = results.get("srm") or {}
    counts = ", ".join(f"{arm} {n}" for arm, n in (srm.get("counts") or {}).items())
    expected = ", ".join(f"{e:.0f}" for e in (srm.get("expected") or {}).values())
    p_value = srm.get("p_value")
    judged = (
        "MISMATCH: the split did not serve the configured weights, no verdict is trusted"
        if srm.get("mismatch")
        else "ok"
    )
    p_text = "-" if p_value is None else f"{p_value:.3g}"
    out.print(
        f"sample ratio: {counts} (expected {expected}), p = {p_text}: {judged}", highlight=False
    )
    for arm, shadow in (results.get("shadows") or {}).items():
        agreement = shadow.get("agreement")
        rate = "-" if agreement is None else f"{agreement:.1%}"
        disagreements = len(shadow.get("disagreements") or [])
        out.print(
            f"shadow {arm}: {shadow.get('runs', 0)} runs, {shadow.get('compared', 0)} compared "
            f"with the live decision, agreement {rate} ({disagreements} disagreements listed)",
            highlight=False,
        )


def _is_rate(kpi: str) -> bool:
    return kpi.endswith("_rate") or kpi == "shadow_agreement"


def _value(kpi: str, value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:.1%}" if _is_rate(kpi) else f"{value:,.2f}"


def _difference(kpi: str, compared: dict[str, Any]) -> str:
    """`-13.0 pp [-21.2, -4.8]` for a rate (percentage points), plain figures otherwise."""
    difference = compared.get("difference")
    if not isinstance(difference, int | float):
        return "-"
    scale, unit = (100.0, " pp") if _is_rate(kpi) else (1.0, "")
    low, high = compared.get("ci_low"), compared.get("ci_high")
    # A bound is null while an arm has too few measures to bound anything.
    low_text = f"{scale * low:+.1f}" if isinstance(low, int | float) else "-∞"
    high_text = f"{scale * high:+.1f}" if isinstance(high, int | float) else "+∞"
    return f"{scale * difference:+.1f}{unit} [{low_text}, {high_text}]"


experiment_app.command("create")(create)
experiment_app.command("list")(list_experiments)
experiment_app.command("show")(show)
experiment_app.command("stop")(stop)
