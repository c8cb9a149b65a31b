"""`warden keys`: the secrets every process of a deployment shares (init, show, rotate).

docs/keys.md says what each key does and what rotating it costs.
"""

from __future__ import annotations

import os
import secrets
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine, select

from app import deployment_keys as dk
from app.audit import heads
from app.audit.ledger import append, checkpoints
from app.cli.resources import database, err, out
from app.config import Settings
from app.deployment_keys import AUDIT_SIGNING_KEY, FINGERPRINT_SECRET, SERVER_SECRET
from app.store.engine import read_connection, write_transaction
from app.store.tables import Project

# The ledger event a signing-key rotation appends to every project's ledger.
SIGNING_KEY_ROTATED = "signing_key.rotated"
ENV_FILE = "warden.env"

keys_app = typer.Typer(
    help="The secrets every process of a deployment shares: make them, show them, rotate them.",
    no_args_is_help=True,
)


@keys_app.command("init")
def init(
    folder: Annotated[Path, typer.Argument(help="Folder to write warden.env and the key into")],
) -> None:
    """Make a deployment's shared secrets: FOLDER/warden.env (WARDEN_SECRET_KEY,
    WARDEN_FINGERPRINT_SECRET, WARDEN_AUDIT_SIGNING_KEY) and FOLDER/audit-signing.key, both
    readable by the owner only. Never overwrites either.

    Give every process the same env file and key file (docker compose: `env_file`, and the
    key mounted read-only at the path the env file names).

    Example: [bold]warden keys init /etc/warden[/bold]
    """
    folder = folder.resolve()
    env_path, key_path = folder / ENV_FILE, folder / checkpoints.KEY_FILE
    for path in (env_path, key_path):
        if path.exists():
            err.print(
                f"[red]error:[/red] {path} exists already; nothing was written", highlight=False
            )
            raise typer.Exit(1)
    folder.mkdir(parents=True, exist_ok=True)
    heads.save_private_key(heads.generate_key(), key_path)
    lines = [
        f"WARDEN_SECRET_KEY={secrets.token_urlsafe(48)}",
        f"WARDEN_FINGERPRINT_SECRET={secrets.token_urlsafe(48)}",
        f"WARDEN_AUDIT_SIGNING_KEY={key_path}",
    ]
    fd = os.open(env_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write("\n".join(lines) + "\n")
    out.print(
        f"wrote {env_path} and {key_path} (mode 0600): give every process both", highlight=False
    )


@keys_app.command("show")
def show() -> None:
    """Print this process's key ids beside the ones the deployment records.

    A key id names a key without revealing it. On PostgreSQL a process whose ids differ from
    the records refuses to serve; on SQLite (one machine) nothing is checked.

    Example: [bold]warden keys show[/bold]
    """
    settings = Settings()
    with database() as engine:
        mine = dk.process_keys(settings)
        with read_connection(engine) as conn:
            records = dk.recorded(conn)
    for key in mine:
        record = records.get(key.name)
        if key.key_id is None:
            here = "not set, none in the data folder yet"
        else:
            here = key.key_id + (
                "" if key.configured else f" (the data folder's, {key.local_file})"
            )
        there = record.describe() if record else "none recorded yet"
        agree = ""
        if record is not None and key.key_id is not None:
            agree = (
                "  [green]same[/green]" if record.key_id == key.key_id else "  [red]differs[/red]"
            )
        out.print(f"{key.setting}\n  this process: {here}\n  deployment:   {there}{agree}",
                  highlight=False)  # fmt: skip


class Rotated(StrEnum):
    server_secret = "server-secret"
    fingerprint_secret = "fingerprint-secret"
    signing_key = "signing-key"


_NAMES = {
    Rotated.server_secret: SERVER_SECRET,
    Rotated.fingerprint_secret: FINGERPRINT_SECRET,
    Rotated.signing_key: AUDIT_SIGNING_KEY,
}


@keys_app.command("rotate")
def rotate(
    key: Annotated[Rotated, typer.Argument(help="Which key")],
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm: you read what rotating it costs (docs/keys.md)")
    ] = False,
) -> None:
    """Make the key this command is given (its setting, in this command's environment) the
    deployment's: processes with the old one refuse to start from now on, so set the new one
    on every process and restart them.

    signing-key: old heads keep verifying with the old public key; every project's ledger
    records `signing_key.rotated` (old and new key ids, the new public key).
    server-secret: every API key stops working (re-issue them) and retained inputs sealed
    under the old secret become unreadable. fingerprint-secret: fingerprints of new inputs no
    longer match those of old ones.

    Example: [bold]WARDEN_AUDIT_SIGNING_KEY=/etc/warden/next/audit-signing.key
    warden keys rotate signing-key --yes[/bold]
    """
    name = _NAMES[key]
    settings = Settings()
    with database() as engine:
        mine = next(k for k in dk.process_keys(settings) if k.name == name)
        if not mine.configured or mine.key_id is None:
            err.print(
                f"[red]error:[/red] {mine.setting} is not set: set the new key in this "
                "command's environment, as you will on every process",
                highlight=False,
            )
            raise typer.Exit(1)
        with read_connection(engine) as conn:
            before = dk.recorded(conn).get(name)
        if before is not None and before.key_id == mine.key_id:
            out.print(f"{mine.setting} is the deployment's already (key id {mine.key_id})")
            return
        if not yes:
            err.print(
                f"[red]error:[/red] rotating the {dk.SETTINGS[name][1]} has costs (see "
                "`warden keys rotate --help`, docs/keys.md): pass --yes",
                highlight=False,
            )
            raise typer.Exit(1)
        dk.replace_record(engine, name, mine.key_id)
        if name == AUDIT_SIGNING_KEY:
            _record_rotation(engine, settings, before.key_id if before else None, mine.key_id)
    old = before.key_id if before else "none"
    out.print(f"{mine.setting}: key id {old} -> {mine.key_id}; set it on every process and "
              "restart them", highlight=False)  # fmt: skip


def _record_rotation(engine: Engine, settings: Settings, old: str | None, new: str) -> None:
    public = heads.public_key_pem(checkpoints.signing_key(settings))
    payload = {"old_key_id": old, "new_key_id": new, "public_key": public}
    with read_connection(engine) as conn:
        project_ids = [int(pid) for pid in conn.execute(select(Project.id)).scalars()]
    for project_id in project_ids:
        with write_transaction(engine) as conn:
            append(conn, project_id, None, SIGNING_KEY_ROTATED, payload)
