"""`warden experiment configure`: a project's experiment settings (what counts as a
successful plan or an escalation, LLM prices, world-model cost, the deploy gate's demand for
evidence, the out-of-distribution threshold)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from app.cli.resources import database, err, out
from app.experiments import settings as experiment_settings
from app.tenancy import projects


def _prices(entries: list[str]) -> dict[str, dict[str, float]]:
    prices = {}
    for entry in entries:
        model, _, figures = entry.partition("=")
        parts = figures.split(",")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            numbers = []
        if not model or len(numbers) != 2:
            err.print(
                f"[red]error:[/red] --price {entry!r}: write MODEL=INPUT,OUTPUT per 1k tokens"
            )
            raise typer.Exit(2)
        prices[model] = {"input_per_1k_tokens": numbers[0], "output_per_1k_tokens": numbers[1]}
    return prices


def configure(
    project: Annotated[str, typer.Option(help="The project")] = "default",
    success_outcome: Annotated[
        list[str] | None, typer.Option(help="An outcome that is a successful plan (repeat)")
    ] = None,
    escalation_outcome: Annotated[
        list[str] | None, typer.Option(help="An outcome that hands over to a person (repeat)")
    ] = None,
    price: Annotated[
        list[str] | None,
        typer.Option(help="MODEL=INPUT,OUTPUT: an LLM's price per 1k tokens (repeat)"),
    ] = None,
    world_model_cost_per_second: Annotated[
        float | None, typer.Option(help="Cost of one second of the world model's rollout")
    ] = None,
    require_experiment: Annotated[
        bool | None,
        typer.Option(
            "--require-experiment/--no-require-experiment",
            help="Promotions need an experiment that judged the version",
        ),
    ] = None,
    ood_quantile: Annotated[
        float | None,
        typer.Option(help="Quantile of the reference's own distances beyond which a state is OOD"),
    ] = None,
    ood_reference_count: Annotated[
        int | None, typer.Option(help="A version's first N requests are its OOD reference")
    ] = None,
    show: Annotated[bool, typer.Option(help="Only print the current settings")] = False,
) -> None:
    """Set how a project's decision KPIs are computed and what its deploy gate asks of
    experiments (unset options stay; prices are merged by model).

    Example: [bold]warden experiment configure --project booking --success-outcome booked
    --price intent-parser=0.5,1.5 --world-model-cost-per-second 0.002 --require-experiment[/bold]
    """
    changes: dict[str, Any] = {
        key: value
        for key, value in {
            "success_outcomes": success_outcome or None,
            "escalation_outcomes": escalation_outcome or None,
            "world_model_cost_per_second": world_model_cost_per_second,
            "require_experiment": require_experiment,
            "ood_quantile": ood_quantile,
            "ood_reference_count": ood_reference_count,
        }.items()
        if value is not None
    }
    new_prices = _prices(price or [])
    with database() as engine:
        project_id = projects.project_id(engine, project)
        if new_prices:
            current = experiment_settings.load(engine, project_id).model_dump(mode="json")
            changes["prices"] = {**current["prices"], **new_prices}
        if show or not changes:
            found = experiment_settings.load(engine, project_id)
        else:
            found = experiment_settings.update_settings(engine, project_id, changes)
    out.print_json(found.model_dump_json())
