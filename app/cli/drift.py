"""`warden drift`: run a drift job now, list reports, set a project's drift settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.cli.resources import database, err, out, policy_set
from app.config import Settings
from app.drift import reports
from app.drift import settings as drift_settings
from app.tenancy import projects

drift_app = typer.Typer(
    help="Drift of inputs, world-model latent states and decisions: run, list, configure.",
    no_args_is_help=True,
)

_PROJECT = typer.Option(help="The project whose traffic is judged")
COLOURS = {"none": "green", "warn": "yellow", "drift": "red"}


@drift_app.command("run")
def run(
    project: Annotated[str, _PROJECT] = "default",
    model: Annotated[str | None, typer.Option(help="Only this model (with --version)")] = None,
    version: Annotated[str | None, typer.Option(help="Only this version (with --model)")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the latent test's random features")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Judge the monitored world-model versions now (or one version): store a report per
    kind, log the job to MLflow, run the drift policies, alert the webhook.

    Exits 0 when nothing drifted, 3 when some version drifted (for scripts and cron).

    Example: [bold]warden drift run --project booking --model booking-world-model --version 3[/bold]
    """
    if (model is None) != (version is None):
        err.print("[red]error:[/red] give --model and --version together, or neither")
        raise typer.Exit(2)
    from app.drift.job import DriftRunner

    settings = Settings()
    with database() as engine:
        runner = DriftRunner(
            engine, settings.resolved_mlflow_tracking_uri, settings.data_dir, policy_set(settings)
        )
        with Progress(
            TextColumn("[bold]drift[/bold] {task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} versions"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=as_json,
        ) as bar:
            task = bar.add_task("reading traffic", total=None)

            def step(what: str, done: int, total: int) -> None:
                bar.update(task, description=what, completed=done, total=total)

            result = runner.run(project, model, version, progress=step, seed=seed)
    if as_json:
        out.print_json(json.dumps(result.to_json(), default=str))
    else:
        _print(result.to_json())
    if any(v.verdict == "drift" for v in result.versions):
        raise typer.Exit(3)


def _print(result: dict[str, Any]) -> None:
    if not result["versions"]:
        out.print(f"no world-model version of project {result['project']!r} had recent traffic")
    for version in result["versions"]:
        colour = COLOURS[version["verdict"]]
        out.print(
            f"[bold]{version['model_name']} v{version['model_version']}[/bold]: "
            f"[{colour}]{version['verdict']}[/{colour}]  (job {version['job_id']}"
            + (f", MLflow run {version['mlflow_run_id']}" if version["mlflow_run_id"] else "")
            + ")",
            highlight=False,
        )
        for report in version["reports"]:
            c = COLOURS[report["verdict"]]
            out.print(
                f"  {report['kind']:<9}[{c}]{report['verdict']:<6}[/{c}] "
                f"{report['current']['requests']} requests vs {report['reference']['source']} "
                f"({report['reference'].get('rows', '?')} rows); "
                f"{_highlights(report)}",
                highlight=False,
            )
        for kind, reason in version["skipped"].items():
            out.print(f"  {kind:<9}[dim]skipped: {reason}[/dim]", highlight=False)
        for kind, verdicts in version["policies"].items():
            for v in verdicts:
                if v["fired"]:
                    out.print(f"  policy {v['policy_id']} ({kind}): {v['effect']}: {v['message']}")
        for move in version["rollbacks"]:
            out.print(
                f"  [red]rolled back[/red] alias {move['alias']}: v{move['from']} -> v{move['to']}"
            )


def _highlights(report: dict[str, Any]) -> str:
    """What moved, in a few words."""
    scores = report["scores"]
    if report["kind"] == "input":
        drifted = [c["column"] for c in scores.get("columns", []) if c.get("drifted")]
        return f"drifted columns: {', '.join(drifted) or 'none'}"
    if report["kind"] == "latent":
        return "; ".join(
            f"{layer} p={layer_scores['p_value']:.3f}"
            for layer, layer_scores in scores.get("layers", {}).items()
        )
    failing = [t["name"] for t in scores.get("tests", []) if t.get("verdict") != "none"]
    return f"moved: {', '.join(failing) or 'nothing'}"


@drift_app.command("list")
def list_(
    project: Annotated[str, _PROJECT] = "default",
    model: Annotated[str | None, typer.Option(help="Only this model")] = None,
    version: Annotated[str | None, typer.Option(help="Only this version (with --model)")] = None,
    kind: Annotated[str | None, typer.Option(help="input, latent or decision")] = None,
    verdict: Annotated[str | None, typer.Option(help="none, warn or drift")] = None,
    limit: Annotated[int, typer.Option(min=1, max=reports.MAX_PAGE)] = 20,
) -> None:
    """Stored drift reports, newest first.

    Example: [bold]warden drift list --project booking --verdict drift[/bold]
    """
    with database() as engine:
        page = reports.list_reports(
            engine, projects.project_id(engine, project), model, version, kind, verdict,
            limit=limit,
        )  # fmt: skip
    table = Table("created", "model", "version", "kind", "verdict", "requests", "job")
    for item in page.items:
        c = COLOURS.get(item.verdict, "white")
        table.add_row(
            datetime.fromisoformat(item.created_at).astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
            item.model_name, item.model_version, item.kind,
            f"[{c}]{item.verdict}[/{c}]", str(item.scores.get("requests", "")),
            (item.job_id or "")[:8],
        )  # fmt: skip
    out.print(table)


@drift_app.command("configure")
def configure(
    project: Annotated[str, _PROJECT] = "default",
    window: Annotated[
        str | None, typer.Option(help="count (the newest N requests) or time (the last T s)")
    ] = None,
    current_count: Annotated[int | None, typer.Option(help="N of a count window")] = None,
    current_seconds: Annotated[int | None, typer.Option(help="T of a time window")] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            help="traffic reference: spread (N requests evenly spaced across a version's "
            "first 10 x N; the default), first (its first N requests) or preceding (the N "
            "just before the current window)"
        ),
    ] = None,
    reference_count: Annotated[
        int | None, typer.Option(help="N, the requests in the traffic reference")
    ] = None,
    reference_since: Annotated[
        str | None, typer.Option(help="pin the traffic reference to a time range: its start")
    ] = None,
    reference_until: Annotated[
        str | None, typer.Option(help="... and its end (ISO 8601; '' with since '' unpins)")
    ] = None,
    min_requests: Annotated[int | None, typer.Option(help="smaller windows are not judged")] = None,
    interval: Annotated[
        int | None, typer.Option(help="seconds between scheduled jobs; 0: on demand only")
    ] = None,
    webhook: Annotated[
        str | None, typer.Option(help="URL that gets a JSON POST per alert ('' to remove)")
    ] = None,
    show: Annotated[bool, typer.Option(help="Only print the current settings")] = False,
) -> None:
    """Set a project's drift windows, schedule and alert webhook (unset options stay).

    Example: [bold]warden drift configure --project booking --window count --current-count 1000
    --interval 900 --webhook https://alerts.example.com/warden[/bold]
    """
    changes: dict[str, Any] = {
        key: value
        for key, value in {
            "window": window,
            "current_count": current_count,
            "current_seconds": current_seconds,
            "reference": reference,
            "reference_count": reference_count,
            "min_requests": min_requests,
            "interval_seconds": interval,
        }.items()
        if value is not None
    }
    if webhook is not None:
        changes["webhook_url"] = webhook or None
    for key, value in {"reference_since": reference_since,
                       "reference_until": reference_until}.items():  # fmt: skip
        if value is not None:
            changes[key] = value or None
    with database() as engine:
        project_id = projects.project_id(engine, project)
        if show or not changes:
            found = drift_settings.load(engine, project_id)
        else:
            found = drift_settings.update_settings(engine, project_id, changes)
    out.print_json(found.model_dump_json())
