"""What the `warden` commands share: the consoles, the configured database, the policy set."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from app.config import Settings
from app.errors import WardenError
from app.store import schema
from app.store.engine import create_db_engine
from policies import BUILTIN, PolicyLoadError, PolicySet

out = Console()
err = Console(stderr=True, soft_wrap=True)


@contextmanager
def database() -> Iterator[Engine]:
    """The configured database, migrated; any failure becomes a one-line error and exit 1."""
    try:
        settings = Settings()
        engine = create_db_engine(settings)
        try:
            if not schema.is_current(engine):
                schema.upgrade(engine)
            yield engine
        finally:
            engine.dispose()
    except WardenError as exc:
        err.print(f"[red]error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(1) from None
    except SQLAlchemyError as exc:
        err.print(f"[red]database error:[/red] {str(exc).splitlines()[0]}", highlight=False)
        raise typer.Exit(1) from None


def policy_set(settings: Settings) -> PolicySet:
    try:
        return PolicySet.load_dir(settings.policies_dir or BUILTIN)
    except PolicyLoadError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
