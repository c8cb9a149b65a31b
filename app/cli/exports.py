"""`warden export` (write a signed bundle) and `warden verify` (check one, offline)."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from app.audit import heads
from app.audit.bundle import Scope, parse_model
from app.audit.exports import parse_time, produce
from app.audit.ledger import checkpoints
from app.audit.verify import Failure, verify_bundle
from app.cli.resources import database, err, out
from app.config import Settings
from app.errors import BadRequest

_PROGRESS_FROM = 20_000  # ledger events: smaller exports finish before a bar is worth it


def export(
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the bundle (a zip)")],
    project: Annotated[str, typer.Option(help="The project")] = "default",
    since: Annotated[
        str | None,
        typer.Option("--from", help="Start of the period, ISO 8601 (inclusive; UTC if no zone)"),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--to", help="End of the period, ISO 8601 (exclusive)")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Only requests one model served: NAME or NAME/VERSION")
    ] = None,
    subject: Annotated[
        str | None, typer.Option(help="Only one subject's requests (its id or pseudonym)")
    ] = None,
    prove_from: Annotated[
        list[int] | None,
        typer.Option(help="Also a consistency proof from this tree size (a pinned head's)"),
    ] = None,
    uncompressed: Annotated[
        bool, typer.Option(help="Store the JSON files uncompressed: bigger, faster to verify")
    ] = False,
    mlflow: Annotated[bool, typer.Option(help="Log the export to MLflow")] = True,
) -> None:
    """Write the records of a period (and a model, a subject) as a signed bundle.

    The bundle holds the records as JSON Lines and Parquet, their ledger events with the
    proofs that tie them to a signed tree head, a report (HTML, PDF) and a manifest signed
    with the audit key. Check it anywhere with [bold]warden verify[/bold].

    Example: [bold]warden export --project booking --from 2025-01-01 --to 2025-04-01
    --out q1.zip[/bold]
    """
    settings = Settings()
    try:
        name, version = parse_model(model)
        scope = Scope(
            project=project,
            since=parse_time(since, "--from"),
            until=parse_time(until, "--to"),
            model_name=name,
            model_version=version,
            subject=subject,
        )
    except BadRequest as exc:
        err.print(f"[red]error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(2) from None
    with database() as engine, Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(f"exporting {project}", total=None, visible=False)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, visible=total >= _PROGRESS_FROM)

        key = checkpoints.signing_key(settings)
        produced = produce(
            engine, settings, key, scope, out_path, f"cli:{getpass.getuser()}",
            progress=progress, prove_from=tuple(prove_from or ()),
            compresslevel=None if uncompressed else 1, mlflow=mlflow,
        )  # fmt: skip
    result = produced.result
    manifest = result.manifest
    counts = manifest["counts"]
    anchor = manifest["ledger"]["anchor"]
    out.print(
        f"wrote {out_path} ({result.bytes:,} bytes, SHA-256 {result.sha256}) in "
        f"{result.seconds:.1f} s: {counts['requests']:,} requests, "
        f"{counts['ledger_events']:,} ledger events ({manifest['scope']['mode']} scope), "
        f"{counts['erased_requests']:,} erased; anchored in the head of "
        f"{anchor['tree_size']:,} events signed {anchor['signed_at']} by key {anchor['key_id']}",
        highlight=False,
    )
    if produced.mlflow_run_id:
        out.print(f"logged to MLflow as run {produced.mlflow_run_id}", highlight=False)
    elif produced.mlflow_note:
        err.print(f"[yellow]note:[/yellow] {produced.mlflow_note}", highlight=False)
    out.print(
        "verify it with: warden verify "
        f"{out_path} --public-key warden.pub  (the key: `warden audit public-key`)",
        highlight=False,
    )


def verify(
    bundle: Annotated[Path, typer.Argument(help="The bundle (zip)")],
    public_key: Annotated[
        list[Path],
        typer.Option(help="The public key (PEM) you trust for the project; repeat for several"),
    ],
    pin: Annotated[
        Path | None,
        typer.Option(help="A HEAD.json kept from an earlier export: the log must extend it"),
    ] = None,
    save_head: Annotated[
        Path | None,
        typer.Option(help="On success, write the bundle's anchor head here (pin it next time)"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes, each checking a part of the ledger at a time; 0: none "
            "(default: one per CPU, up to 8, for bundles above 64 MB)"
        ),
    ] = None,
) -> None:
    """Check a bundle offline (no database, no network) against the key you trust.

    Checks the manifest's signature, every file's SHA-256, every ledger event's hash from
    its canonical bytes, the chain (full scope) or the inclusion proofs (partial scope)
    against the signed heads, every head's signature, the counts, and with --pin that the
    log only grew since the head you kept.

    Exit status: 0 verified; 2 usage; 10 manifest signature; 11 file digest; 12 record hash;
    13 chain; 14 inclusion proof (or root); 15 head signature; 16 counts; 17 consistency or
    pin (docs/audit.md, "Verifying an export bundle").

    Example: [bold]warden verify q1.zip --public-key warden.pub --pin HEAD.json[/bold]
    """
    if not bundle.is_file():
        err.print(f"[red]error:[/red] {bundle}: no such file", highlight=False)
        raise typer.Exit(int(Failure.USAGE))
    keys = []
    for path in public_key:
        try:
            keys.append(heads.load_public_key(path))
        except (OSError, ValueError) as exc:
            err.print(f"[red]error:[/red] {path} is not an Ed25519 public key: {exc}")
            raise typer.Exit(int(Failure.USAGE)) from None
    pinned = None
    if pin is not None:
        try:
            pinned = heads.head_from_json(json.loads(pin.read_text()))
        except (OSError, ValueError) as exc:
            err.print(f"[red]error:[/red] {pin} is not a signed head (HEAD.json): {exc}")
            raise typer.Exit(int(Failure.USAGE)) from None
    verdict = verify_bundle(bundle, keys, pinned, workers=workers)
    for warning in verdict.warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    if not verdict.ok:
        err.print(verdict.summary(), highlight=False, markup=False)
        raise typer.Exit(verdict.exit_code)
    out.print(verdict.summary(), highlight=False, markup=False)
    out.print(verdict.details(), highlight=False, markup=False)
    if save_head is not None and verdict.anchor is not None:
        save_head.write_text(json.dumps(heads.head_to_json(verdict.anchor), indent=2) + "\n")
        out.print(f"saved the anchor head to {save_head}: pass it with --pin next time")
