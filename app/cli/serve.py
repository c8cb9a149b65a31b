"""`warden serve` and `warden migrate`: the service process and its schema."""

from __future__ import annotations

import os
from typing import Annotated, get_args

import typer
import uvicorn
from sqlalchemy import Engine

from app.cli.resources import database, err, out
from app.config import Settings
from app.deployment_keys import check_shared_secrets
from app.tenancy import projects

ROLES: tuple[str, ...] = get_args(Settings.model_fields["role"].annotation)


def migrate() -> None:
    """Upgrade the database to the newest schema.

    Example: [bold]WARDEN_DATABASE_URL=postgresql+psycopg://warden@db/warden warden migrate[/bold]
    """
    with database() as engine:
        out.print(f"database at {engine.url.render_as_string()} is at the newest schema")


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [default: settings]")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [default: 8000]")] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Processes serving HTTP (one with --role worker)")
    ] = 1,
    role: Annotated[
        str | None,
        typer.Option(
            metavar="[api|worker|all]",
            help="What this process does (see above); default: WARDEN_ROLE, else all",
        ),
    ] = None,
) -> None:
    """Migrate the database if needed, then serve the API.

    On a store with no project yet, creates the [bold]default[/bold] project and prints an
    admin key for it, once (a worker leaves that to an API process).

    Roles, for several processes on one database: [bold]api[/bold] answers HTTP and runs no
    background job (add replicas for CPU); [bold]worker[/bold] runs the background jobs
    (audit heads, drift schedule, lineage, rollups, experiment results, exports) and answers
    only /healthz, /readyz and /metrics; [bold]all[/bold] (the default) does both. Each job
    is led by one process of the deployment, so a second worker is a safe standby.

    Example: [bold]warden serve --host 127.0.0.1 --port 8000[/bold]
    """
    if role is not None:
        if role not in ROLES:
            err.print(
                f"[red]error:[/red] --role {role!r}: write api, worker or all", highlight=False
            )
            raise typer.Exit(1)
        # Settings() reads it here and in each of uvicorn's worker processes.
        os.environ["WARDEN_ROLE"] = role
    settings = Settings()
    if settings.role == "worker" and workers > 1:
        # Each job is led by one process of the deployment: more worker processes here would
        # only wait; a standby belongs on another machine.
        err.print(
            "[red]error:[/red] --workers applies to the api and all roles: one worker process "
            "runs every job (start a second `warden serve --role worker` elsewhere as a standby)",
            highlight=False,
        )
        raise typer.Exit(1)
    with database() as engine:
        check_shared_secrets(engine, settings)  # before any key of its own is made
        key = _first_run_key(engine, settings) if settings.role != "worker" else None
    if key:
        out.print(
            "Created project [bold]default[/bold]. Its admin API key, shown only this once:\n"
            f"  [bold green]{key}[/bold green]\n"
            "Send it as 'Authorization: Bearer <key>'. More keys: `warden key create`.",
            highlight=False,
        )
    uvicorn.run(
        "app.main:create_served_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level="info",
        access_log=False,
    )


def _first_run_key(engine: Engine, settings: Settings) -> str | None:
    return projects.ensure_default_project(engine, settings.server_secret())
