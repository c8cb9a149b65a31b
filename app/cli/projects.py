"""`warden project` and `warden key`: projects and their API keys."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from app.cli.resources import database, err, out
from app.config import Settings
from app.tenancy import projects
from app.tenancy.keys import Scope

project_app = typer.Typer(
    help="Manage projects: every stored row belongs to one.", no_args_is_help=True
)
key_app = typer.Typer(
    help="Manage API keys (shown once, stored only as a keyed hash).", no_args_is_help=True
)


@project_app.command("create")
def project_create(
    name: Annotated[str, typer.Argument(help="Lowercase name, e.g. booking")],
) -> None:
    """Create a project.

    Example: [bold]warden project create booking[/bold]
    """
    with database() as engine:
        projects.create_project(engine, name)
    out.print(f"created project {name}")


@project_app.command("list")
def project_list() -> None:
    """List projects.

    Example: [bold]warden project list[/bold]
    """
    with database() as engine:
        rows = projects.list_projects(engine)
    table = Table("project", "created")
    for name, created in rows:
        table.add_row(name, created.isoformat(timespec="seconds"))
    out.print(table)


@key_app.command("create")
def key_create(
    project: Annotated[str, typer.Option(help="Project the key belongs to")],
    scope: Annotated[list[Scope], typer.Option(help="A scope to grant; repeat for several")],
    name: Annotated[str, typer.Option(help="A note saying who or what uses the key")] = "",
) -> None:
    """Create an API key and print it; it is shown this once and never again.

    Scopes: [bold]ingest[/bold] (send spans), [bold]read[/bold] (query), [bold]audit[/bold]
    (read everything, act on nothing), [bold]admin[/bold] (everything).

    Example: [bold]warden key create --project booking --scope ingest --name inference-pods[/bold]
    """
    settings = Settings()
    with database() as engine:
        key = projects.create_key(
            engine, settings.server_secret(), project, [s.value for s in scope], name
        )
    # The bare key on stdout so scripts can capture it; the notice on stderr.
    err.print(f"API key for project {project} ({', '.join(s.value for s in scope)}):")
    print(key)


@key_app.command("list")
def key_list(
    project: Annotated[str | None, typer.Option(help="Only this project's keys")] = None,
) -> None:
    """List API keys by id (the key's first characters), never the keys themselves.

    Example: [bold]warden key list --project booking[/bold]
    """
    with database() as engine:
        rows = projects.list_keys(engine, project)
    table = Table("key id", "project", "scopes", "name", "created", "revoked")
    for k in rows:
        table.add_row(
            k.key_id,
            k.project,
            ",".join(k.scopes),
            k.name,
            k.created_at.isoformat(timespec="seconds"),
            k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "",
        )
    out.print(table)


@key_app.command("revoke")
def key_revoke(
    key_id: Annotated[str, typer.Argument(help="Key id as `warden key list` shows it")],
) -> None:
    """Revoke a key: it is refused from the next request on.

    Example: [bold]warden key revoke wdn_3fKq81Zx[/bold]
    """
    with database() as engine:
        projects.revoke_key(engine, key_id)
    out.print(f"revoked {key_id}")
