"""`warden promote`, `warden rollback` and `warden lineage`: model versions in MLflow,
moved through the deploy gates, and traced back from a request."""

from __future__ import annotations

import getpass
from typing import Annotated, Any

import typer
from rich.table import Table

from app.cli.resources import database, err, out, policy_set
from app.config import Settings
from app.tenancy import projects


def promote(
    model: Annotated[str, typer.Argument(help="Registered model name in MLflow")],
    version: Annotated[str, typer.Argument(help="The version to promote")],
    alias: Annotated[str, typer.Option(help="The alias to move")] = "champion",
    project: Annotated[
        str, typer.Option(help="Project whose policies and records apply")
    ] = "default",
) -> None:
    """Run the deploy gates on a version and move the alias only if they allow it.

    Example: [bold]warden promote booking-world-model 4 --alias champion[/bold]
    """
    from app.governance import deploy
    from app.registry import lineage

    settings = Settings()
    with database() as engine:
        move = deploy.promote(
            engine, lineage.mlflow_client(settings.resolved_mlflow_tracking_uri),
            policy_set(settings), projects.project_id(engine, project), project, model, version,
            alias, f"cli:{getpass.getuser()}",
        )  # fmt: skip
    _print_move(move)
    if not move.allowed:
        for v in move.failing():
            err.print(f"refused by {v.policy_id} v{v.version}: {v.message}", highlight=False)
        raise typer.Exit(1)


def rollback(
    model: Annotated[str, typer.Argument(help="Registered model name in MLflow")],
    alias: Annotated[str, typer.Option(help="The alias to move back")] = "champion",
    project: Annotated[str, typer.Option(help="Project whose records apply")] = "default",
    reason: Annotated[str, typer.Option(help="Why, for the record")] = "",
) -> None:
    """Move the alias back to the previous version that passed the deploy gates.

    Example: [bold]warden rollback booking-world-model --alias champion --reason "drift"[/bold]
    """
    from app.governance import deploy
    from app.registry import lineage

    settings = Settings()
    with database() as engine:
        move = deploy.rollback(
            engine, lineage.mlflow_client(settings.resolved_mlflow_tracking_uri),
            projects.project_id(engine, project), model, alias, f"cli:{getpass.getuser()}", reason,
        )  # fmt: skip
    _print_move(move)


def _print_move(move: Any) -> None:
    table = Table("policy", "version", "effect", "message")
    for v in move.verdicts:
        table.add_row(v.policy_id, v.version, v.effect.value, v.message)
    if move.verdicts:
        out.print(table)
    state = "moved" if move.allowed else "NOT moved"
    out.print(
        f"{move.action}: {move.model} alias {move.alias!r} {state} "
        f"({move.from_version or 'none'} -> {move.to_version})",
        highlight=False,
    )


def lineage_tree(
    request_id: Annotated[str, typer.Argument(help="The request's id (its trace id)")],
    project: Annotated[str, typer.Option(help="The request's project")] = "default",
) -> None:
    """Print a request's lineage: each stage's model version, its MLflow run, its datasets.

    Example: [bold]warden lineage 5b8efff798038103d269b633813fc60c --project booking[/bold]
    """
    from rich.tree import Tree

    from app.registry import lineage

    settings = Settings()
    with database() as engine:
        found = lineage.request_lineage(
            engine, projects.project_id(engine, project), request_id,
            settings.resolved_mlflow_tracking_uri,
        )  # fmt: skip
    tree = Tree(f"request {found.request_id}")
    for stage in found.stages:
        aliases = f" @{','.join(stage.aliases)}" if stage.aliases else ""
        node = tree.add(f"{stage.role}: {stage.name} v{stage.version}{aliases} ({stage.status})")
        run = stage.run
        if run:
            metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(run.get("metrics", {}).items()))
            run_node = node.add(f"run {run.get('id')}" + (f": {metrics}" if metrics else ""))
            for data in stage.datasets:
                run_node.add(
                    f"dataset {data['name']} digest {data['digest']} ({data['context']}) "
                    f"{data['source']}"
                )
    out.print(tree, highlight=False)
