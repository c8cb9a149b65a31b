"""`warden serve` and `warden migrate`: the service process and its schema."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn
from sqlalchemy import Engine

from app.cli.resources import database, out
from app.config import Settings
from app.deployment_keys import check_shared_secrets
from app.tenancy import projects


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
    workers: Annotated[int, typer.Option(min=1, help="Worker processes")] = 1,
) -> None:
    """Migrate the database if needed, then serve the API.

    On a store with no project yet, creates the [bold]default[/bold] project and prints an
    admin key for it, once.

    Example: [bold]warden serve --host 127.0.0.1 --port 8000[/bold]
    """
    settings = Settings()
    with database() as engine:
        check_shared_secrets(engine, settings)  # before any key of its own is made
        key = _first_run_key(engine, settings)
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
