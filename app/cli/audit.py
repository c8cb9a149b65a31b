"""`warden audit` (verify, checkpoint, head, public-key), `warden erase`, `warden retention`
and `warden hold`: the live ledger and what deletes data under its watch."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import Connection, select

from app.audit import erasure, heads, retention
from app.audit.ledger import checkpoints
from app.audit.ledger.verify import (
    Failure,
    Report,
    event_count,
    trusted_keys,
    verify_project,
)
from app.cli.resources import database, err, out
from app.config import Settings
from app.store.dialect import consistent_snapshot
from app.store.tables import Project
from app.tenancy import projects
from collectors import conventions as wire

audit_app = typer.Typer(
    help="The audit ledger: verify it, sign its head now, show the head and the public key.",
    no_args_is_help=True,
)
retention_app = typer.Typer(
    help="How long request detail is kept, and deleting what expired.", no_args_is_help=True
)
hold_app = typer.Typer(
    help="Legal holds: suspend deletion for a project, a model or a subject.",
    no_args_is_help=True,
)
_PROGRESS_FROM = 5000  # events: shorter logs verify without a progress bar


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _public_keys(settings: Settings, files: list[Path]) -> list[Ed25519PublicKey]:
    keys = []
    own = checkpoints.signing_key_path(settings)
    if own.exists():
        try:
            keys.append(heads.load_private_key(own).public_key())
        except (OSError, ValueError) as exc:
            err.print(f"[yellow]warning:[/yellow] cannot read the signing key {own}: {exc}")
    for path in files:
        try:
            keys.append(heads.load_public_key(path))
        except (OSError, ValueError) as exc:
            err.print(f"[red]error:[/red] {path}: {exc}", highlight=False)
            raise typer.Exit(1) from None
    return keys


def _load_pin(path: Path) -> heads.TreeHead:
    try:
        return heads.head_from_json(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        err.print(f"[red]error:[/red] {path} is not a signed head (HEAD.json): {exc}")
        raise typer.Exit(2) from None


@audit_app.command("verify")
def verify(
    project: Annotated[
        str | None, typer.Option(help="Only this project [default: every project]")
    ] = None,
    pin: Annotated[
        Path | None,
        typer.Option(help="A HEAD.json you kept: the ledger must extend it (consistency proof)"),
    ] = None,
    public_key: Annotated[
        list[Path] | None,
        typer.Option(help="Another trusted public key (PEM) heads may be signed by; repeat"),
    ] = None,
) -> None:
    """Recompute every hash and link of the ledger, every signed head's root and signature,
    and with --pin a consistency proof from the pinned head to the newest.

    Exit status: 0 verified; 10 an event's hash, 11 a link, 12 a gap, 13 order, 14 a
    malformed event, 15 the head row out of step; 20 a bad head signature, 21 an unknown
    signing key, 22 the log cut short of a signed head, 23 a root mismatch, 24 the pinned
    head (docs/audit.md).

    Example: [bold]warden audit verify --project booking --pin HEAD.json[/bold]
    """
    settings = Settings()
    pinned = _load_pin(pin) if pin else None
    if pinned and project and pinned.project != project:
        err.print(f"[red]error:[/red] {pin} is a head of project {pinned.project!r}")
        raise typer.Exit(2)
    project = project or (pinned.project if pinned else None)
    keys = trusted_keys(_public_keys(settings, public_key or []))
    first_failure = Failure.OK
    with database() as engine:
        if project:
            projects.project_id(engine, project)  # a clear error for an unknown name
        with engine.connect() as conn:
            consistent_snapshot(conn)
            names = [project] if project else list(
                conn.execute(select(Project.name).order_by(Project.name)).scalars()
            )
            for name in names:
                report = _verify_one(conn, name, keys, pinned)
                if report.ok:
                    extra = f"; {'; '.join(report.notes)}" if report.notes else ""
                    out.print(
                        f"[green]verified[/green] {name}: {report.events:,} events, "
                        f"{report.heads} signed heads{extra}"
                    )
                else:
                    err.print(
                        f"[red]FAILED[/red] {name}: {report.failure.name.lower()} "
                        f"(exit {report.failure.value}): {report.message}",
                        highlight=False,
                    )
                    if first_failure is Failure.OK:
                        first_failure = report.failure
    if first_failure is not Failure.OK:
        raise typer.Exit(first_failure.value)


def _verify_one(
    conn: Connection, name: str, keys: dict[str, Ed25519PublicKey], pinned: heads.TreeHead | None
) -> Report:
    total = event_count(conn, name)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=err, transient=True, disable=total < _PROGRESS_FROM,
    ) as bar:  # fmt: skip
        task = bar.add_task(f"verifying {name}", total=total)
        return verify_project(
            conn, name, keys, pinned, progress=lambda n: bar.update(task, completed=n)
        )


@audit_app.command("checkpoint")
def checkpoint(
    project: Annotated[
        str | None, typer.Option(help="Only this project [default: every project]")
    ] = None,
) -> None:
    """Sign a tree head now for each project whose ledger grew since its last head.

    Example: [bold]warden audit checkpoint --project booking[/bold]
    """
    settings = Settings()
    with database() as engine:
        key = checkpoints.signing_key(settings)
        pid = projects.project_id(engine, project) if project else None
        signed = checkpoints.sign_heads(engine, key, pid)
    for head in signed:
        out.print(f"signed {head.project} at size {head.tree_size}: root {head.root_hash.hex()}")
    if not signed:
        out.print("no ledger grew since its last signed head: nothing to sign")


@audit_app.command("head")
def head(
    project: Annotated[str, typer.Option(help="The project")] = "default",
) -> None:
    """Print the newest signed head as HEAD.json: keep it, and later pass it to
    `warden audit verify --pin`.

    Example: [bold]warden audit head --project booking > HEAD.json[/bold]
    """
    with database() as engine:
        latest = checkpoints.latest_head(engine, projects.project_id(engine, project))
    if latest is None:
        err.print("error: no signed head yet: `warden audit checkpoint` signs one")
        raise typer.Exit(1)
    print(json.dumps(heads.head_to_json(latest), indent=2))


@audit_app.command("public-key")
def public_key() -> None:
    """Print the public key that verifies this service's tree heads (PEM) and its key id.

    Example: [bold]warden audit public-key > warden.pub[/bold]
    """
    key = checkpoints.signing_key(Settings())
    err.print(f"key id {heads.key_id(key.public_key())}")
    print(heads.public_key_pem(key), end="")


def erase(
    subject: Annotated[str, typer.Option(help=f"The subject's id ({wire.REQUEST_SUBJECT})")],
    project: Annotated[str, typer.Option(help="The subject's project")],
    reason: Annotated[str, typer.Option(help="Why, for the record (e.g. a ticket)")] = "",
) -> None:
    """Erase a subject: destroy the key of their retained inputs (which become unreadable)
    and their id; the ledger records it by the subject's pseudonym and still verifies.

    Example: [bold]warden erase --subject user-42 --project booking --reason "GDPR #1234"[/bold]
    """
    with database() as engine:
        done = erasure.erase_subject(
            engine, projects.project_id(engine, project), subject, _actor(), reason
        )
    out.print(
        f"erased subject (pseudonym {done.pseudonym or '-'}): {done.payloads} retained inputs "
        f"unreadable, {done.requests} requests unlinked; ledger event seq {done.seq}",
        highlight=False,
    )


@retention_app.command("show")
def retention_show(project: Annotated[str, typer.Option(help="The project")] = "default") -> None:
    """Show a project's retention and its active legal holds.

    Example: [bold]warden retention show --project booking[/bold]
    """
    with database() as engine:
        pid = projects.project_id(engine, project)
        config = retention.get_settings(engine, pid)
        holds = retention.list_holds(engine, pid)
    days = f"{config.days} days" if config.days else "for ever"
    out.print(f"{project}: request detail kept {days}; high risk: {config.high_risk}")
    _print_holds(holds)


@retention_app.command("set")
def retention_set(
    project: Annotated[str, typer.Option(help="The project")],
    days: Annotated[
        int | None, typer.Option(min=1, help="Days request detail is kept [default: unchanged]")
    ] = None,
    forever: Annotated[bool, typer.Option(help="Keep request detail for ever")] = False,
    high_risk: Annotated[
        bool | None,
        typer.Option(
            "--high-risk/--not-high-risk",
            help="A high-risk AI system: refuses less than six months (EU AI Act Art. 19, 26(6))",
        ),
    ] = None,
) -> None:
    """Set how long a project keeps request detail (spans, states, decisions, inputs).

    Example: [bold]warden retention set --project booking --days 365 --high-risk[/bold]
    """
    changes: dict[str, object] = {}
    if days is not None and forever:
        err.print("error: give --days or --forever, not both")
        raise typer.Exit(2)
    if days is not None or forever:
        changes["days"] = days
    if high_risk is not None:
        changes["high_risk"] = high_risk
    with database() as engine:
        config = retention.configure(
            engine, projects.project_id(engine, project), changes, _actor()
        )
    kept = f"{config.days} days" if config.days else "for ever"
    out.print(f"{project}: request detail kept {kept}; high risk: {config.high_risk}")


@retention_app.command("apply")
def retention_apply(
    project: Annotated[
        str | None, typer.Option(help="Only this project [default: every project]")
    ] = None,
) -> None:
    """Delete request detail older than each project's retention, except what a legal hold
    covers. Ledger events are never deleted; the deletion itself is recorded.

    Example: [bold]warden retention apply[/bold]
    """
    with database() as engine:
        results = (
            [retention.apply(engine, project)] if project else retention.apply_all(engine)
        )
    for r in results:
        if r.days is None:
            out.print(f"{r.project}: kept for ever")
        elif r.held:
            out.print(f"{r.project}: nothing deleted, {r.held}")
        else:
            out.print(
                f"{r.project}: before {r.cutoff:%Y-%m-%d %H:%M} UTC deleted the detail of "
                f"{r.requests} requests ({r.spans} spans, {r.states} states, {r.decisions} "
                f"decisions, {r.payloads} retained inputs)",
                highlight=False,
            )


@hold_app.command("place")
def hold_place(
    project: Annotated[str, typer.Option(help="The project")],
    reason: Annotated[str, typer.Option(help="The matter (a case number)")],
    model: Annotated[str | None, typer.Option(help="Hold this model only")] = None,
    version: Annotated[str | None, typer.Option(help="... at this version only")] = None,
    subject: Annotated[str | None, typer.Option(help="Hold this subject only")] = None,
) -> None:
    """Place a legal hold: on the whole project, or with --model or --subject on part of it.

    Example: [bold]warden hold place --project booking --subject user-42 --reason "case 7"[/bold]
    """
    with database() as engine:
        placed = retention.place_hold(
            engine, projects.project_id(engine, project), _actor(), reason, model, version,
            subject,
        )  # fmt: skip
    out.print(f"placed legal hold {placed.id} ({placed.scope})")


@hold_app.command("release")
def hold_release(
    hold_id: Annotated[int, typer.Argument(help="The hold's id (`warden hold list`)")],
    project: Annotated[str, typer.Option(help="The project")] = "default",
) -> None:
    """Release a legal hold: retention and erasure apply again to what it covered.

    Example: [bold]warden hold release 3 --project booking[/bold]
    """
    with database() as engine:
        retention.release_hold(engine, projects.project_id(engine, project), hold_id, _actor())
    out.print(f"released legal hold {hold_id}")


@hold_app.command("list")
def hold_list(
    project: Annotated[str, typer.Option(help="The project")] = "default",
    all_: Annotated[bool, typer.Option("--all", help="Released holds too")] = False,
) -> None:
    """List legal holds.

    Example: [bold]warden hold list --project booking[/bold]
    """
    with database() as engine:
        holds = retention.list_holds(engine, projects.project_id(engine, project), not all_)
    _print_holds(holds)


def _print_holds(holds: list[retention.Hold]) -> None:
    if not holds:
        out.print("no legal holds")
        return
    table = Table("id", "scope", "covers", "reason", "by", "placed", "released")
    for h in holds:
        covers = (
            f"{h.model_name}{' v' + h.model_version if h.model_version else ''}"
            if h.scope == "model"
            else h.subject or ""
        )
        table.add_row(
            str(h.id), h.scope, covers, h.reason, h.created_by,
            h.created_at.isoformat(timespec="seconds"),
            h.released_at.isoformat(timespec="seconds") if h.released_at else "",
        )  # fmt: skip
    out.print(table)
