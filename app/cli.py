"""The `warden` command line."""

from __future__ import annotations

import getpass
import os
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from rich.table import Table
from sqlalchemy import Engine

from app import projects
from app.audit import cli as audit_cli
from app.audit import erasure, export_cli
from app.cli_common import database, err, out, policy_set
from app.config import Settings
from app.drift.cli import drift_app
from app.errors import WardenError
from app.keys import Scope
from policies import PolicyLoadError, PolicySet, run_tests

app = typer.Typer(
    help="Warden: observability and governance for hybrid AI inference stacks.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
project_app = typer.Typer(
    help="Manage projects: every stored row belongs to one.", no_args_is_help=True
)
key_app = typer.Typer(
    help="Manage API keys (shown once, stored only as a keyed hash).", no_args_is_help=True
)
policy_app = typer.Typer(help="Check and test policy files (policy-as-code).", no_args_is_help=True)
app.add_typer(project_app, name="project")
app.add_typer(key_app, name="key")
app.add_typer(policy_app, name="policy")
app.add_typer(drift_app, name="drift")
app.add_typer(audit_cli.audit_app, name="audit")
audit_cli.register_commands(app)  # warden erase, warden retention, warden hold
export_cli.register_commands(app)  # warden export, warden verify



@app.command()
def migrate() -> None:
    """Upgrade the database to the newest schema.

    Example: [bold]WARDEN_DATABASE_URL=postgresql+psycopg://warden@db/warden warden migrate[/bold]
    """
    with database() as engine:
        out.print(f"database at {engine.url.render_as_string()} is at the newest schema")


@app.command()
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
        key = _first_run_key(engine, settings)
    if key:
        out.print(
            "Created project [bold]default[/bold]. Its admin API key, shown only this once:\n"
            f"  [bold green]{key}[/bold green]\n"
            "Send it as 'Authorization: Bearer <key>'. More keys: `warden key create`.",
            highlight=False,
        )
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level="info",
        access_log=False,
    )


@app.command()
def demo(
    requests: Annotated[
        int | None,
        typer.Option(min=1, help="Send N requests, then stop [default: a stream until Ctrl-C]"),
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="Send to this running service instead of starting one")
    ] = None,
    api_key: Annotated[str | None, typer.Option(help="An ingest key for --endpoint")] = None,
    shift: Annotated[
        bool, typer.Option(help="Traffic unlike the training data (larger groups, later hours)")
    ] = False,
    rate: Annotated[float, typer.Option(min=0.1, help="Requests per second of the stream")] = 5.0,
    seed: Annotated[int, typer.Option(help="Seed of the generated requests")] = 0,
    port: Annotated[int | None, typer.Option(help="Port of the service it starts")] = None,
) -> None:
    """Run the reference hybrid stack (a booking assistant) against Warden.

    Trains the world model and registers it in MLflow on first run (cached afterwards),
    starts the service on the embedded defaults, and sends demo requests through the
    instrumented stack: a steady stream, or --requests N and stop.

    Example: [bold]warden demo --requests 200[/bold]
    Example: [bold]warden demo --endpoint http://warden:8000 --api-key wdn_... --shift[/bold]
    """
    settings = Settings()
    if endpoint and not api_key:
        err.print("[red]error:[/red] --endpoint needs --api-key (a key with the ingest scope)")
        raise typer.Exit(2)
    server = None
    if endpoint is None:
        with database() as engine:
            first_key = _first_run_key(engine, settings)
            api_key = _demo_key(engine, settings)
        if first_key:
            out.print(f"Created project [bold]default[/bold]; its admin key: {first_key}")
        server = _start_server(settings, port or settings.port)
        endpoint = f"http://{settings.host}:{server.config.port}"
        out.print(
            f"Warden is serving on {endpoint}. Look at:\n"
            f"  {endpoint}/v1/requests   (Authorization: Bearer <key>, key in "
            f"{settings.data_dir / 'demo.key'})\n  {endpoint}/docs           (the API)\n"
            f"  {endpoint}/metrics",
            highlight=False,
        )
    assert api_key is not None
    try:
        _run_demo(settings, endpoint, api_key, requests, shift, rate, seed)
    finally:
        if server is not None:
            server.should_exit = True


def _run_demo(
    settings: Settings,
    endpoint: str,
    api_key: str,
    requests: int | None,
    shift: bool,
    rate: float,
    seed: int,
) -> None:
    from rich.progress import Progress

    from examples.booking import demo as booking

    secret = settings.local_secret("fingerprint.key").decode()
    with Progress(console=out, transient=True) as bar:
        task = bar.add_task("demo requests", total=requests)
        result = booking.run(
            endpoint,
            api_key,
            settings.resolved_mlflow_tracking_uri,
            fingerprint_secret=os.environ.get("WARDEN_FINGERPRINT_SECRET", secret),
            spool_dir=settings.data_dir / "spool",
            requests=requests,
            shift=shift,
            seed=seed,
            rate=None if requests else rate,
            progress=lambda n: bar.update(task, completed=n),
            log=lambda line: bar.console.print(line, highlight=False),
        )
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(result.outcomes.items()))
    delivered = "all delivered" if result.delivered else "some still in the spool"
    out.print(f"{result.requests} requests ({outcomes}); {delivered}. SDK: {result.stats}")


def _demo_key(engine: Engine, settings: Settings) -> str:
    """The demo's own ingest+read key for `default`, kept in `<data_dir>/demo.key`."""
    path = settings.data_dir / "demo.key"
    if path.exists():
        key = path.read_text().strip()
        try:
            projects.authenticate(engine, settings.server_secret(), f"Bearer {key}")
            return key
        except WardenError:
            pass  # revoked, or made under another server secret: make a new one
    key = projects.create_key(
        engine, settings.server_secret(), projects.DEFAULT_PROJECT, ["ingest", "read"], "demo"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def _start_server(settings: Settings, port: int) -> uvicorn.Server:
    from app.main import create_app

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host=settings.host, port=port, log_level="warning",
            access_log=False,
        )
    )  # fmt: skip
    thread = threading.Thread(target=server.run, name="warden-server", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            err.print(f"[red]error:[/red] could not serve on {settings.host}:{port} (in use?)")
            raise typer.Exit(1)
        time.sleep(0.05)
    return server


@app.command()
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
    from app import deploy, lineage

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


@app.command()
def rollback(
    model: Annotated[str, typer.Argument(help="Registered model name in MLflow")],
    alias: Annotated[str, typer.Option(help="The alias to move back")] = "champion",
    project: Annotated[str, typer.Option(help="Project whose records apply")] = "default",
    reason: Annotated[str, typer.Option(help="Why, for the record")] = "",
) -> None:
    """Move the alias back to the previous version that passed the deploy gates.

    Example: [bold]warden rollback booking-world-model --alias champion --reason "drift"[/bold]
    """
    from app import deploy, lineage

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


def _first_run_key(engine: Engine, settings: Settings) -> str | None:
    return projects.ensure_default_project(engine, settings.server_secret())


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


_POLICY_DIR = typer.Argument(help="Folder of policy files (*.yaml)")


@policy_app.command("lint")
def policy_lint(directory: Annotated[Path, _POLICY_DIR]) -> None:
    """Load every policy of a folder, compile its CEL, and report the first mistake.

    Example: [bold]warden policy lint policies/builtin[/bold]
    """

    try:
        loaded = PolicySet.load_dir(directory)
    except PolicyLoadError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    table = Table("policy", "version", "phase", "effect", "hash")
    for p in loaded.policies:
        table.add_row(p.id, p.version, p.phase.value, p.effect.value, p.hash[:16])
    out.print(table)
    out.print(f"{len(loaded.policies)} policies, set hash {loaded.hash[:16]}")


@policy_app.command("test")
def policy_test(directory: Annotated[Path, _POLICY_DIR]) -> None:
    """Run the test cases written beside the policies (`<id>.test.yaml`), like `opa test`.

    Example: [bold]warden policy test policies/builtin[/bold]
    """
    try:
        results = run_tests(directory)
    except PolicyLoadError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    for r in results:
        mark = "[green]PASS[/green]" if r.passed else "[red]FAIL[/red]"
        detail = "" if r.passed else f": {r.detail}"
        out.print(f"{mark} {r.policy_id} / {r.name}{detail}", highlight=False)
    failed = sum(not r.passed for r in results)
    out.print(f"{len(results) - failed} passed, {failed} failed")
    if failed or not results:
        raise typer.Exit(1)


@policy_app.command("explain")
def policy_explain(
    request_id: Annotated[str, typer.Argument(help="The request's id (its trace id)")],
    project: Annotated[str, typer.Option(help="The request's project")] = "default",
) -> None:
    """Show which policies judged a stored request, what each said and why, and whether
    each policy is still the one in force now (same content hash).

    Example: [bold]warden policy explain 5b8efff798038103d269b633813fc60c --project booking[/bold]
    """
    from app import queries

    settings = Settings()
    current = {p.id: p.hash for p in policy_set(settings).policies}
    with database() as engine:
        detail = queries.get_request(engine, projects.project_id(engine, project), request_id)
    evaluations = detail["policy_evaluations"]
    out.print(
        f"request {detail['request_id']}: outcome {detail['outcome']}, "
        f"{len(evaluations)} policy evaluations",
        highlight=False,
    )
    table = Table("phase", "policy", "version", "outcome", "message", "in force now")
    for e in evaluations:
        now = current.get(e["policy_id"])
        state = "yes" if now == e["policy_hash"] else ("changed" if now else "removed")
        table.add_row(
            e["phase"], e["policy_id"], e["policy_version"] or "", e["outcome"],
            e["message"] or "", state,
        )  # fmt: skip
    out.print(table)


@app.command("lineage")
def lineage_tree(
    request_id: Annotated[str, typer.Argument(help="The request's id (its trace id)")],
    project: Annotated[str, typer.Option(help="The request's project")] = "default",
) -> None:
    """Print a request's lineage: each stage's model version, its MLflow run, its datasets.

    Example: [bold]warden lineage 5b8efff798038103d269b633813fc60c --project booking[/bold]
    """
    from rich.tree import Tree

    from app import lineage

    settings = Settings()
    with database() as engine:
        found = lineage.request_lineage(
            engine, projects.project_id(engine, project), request_id,
            settings.resolved_mlflow_tracking_uri,
        )  # fmt: skip
    tree = Tree(f"request {found['request_id']}")
    for stage in found["stages"]:
        aliases = f" @{','.join(stage['aliases'])}" if stage["aliases"] else ""
        node = tree.add(
            f"{stage['role']}: {stage['name']} v{stage['version']}{aliases} ({stage['status']})"
        )
        run = stage["run"]
        if run:
            metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(run.get("metrics", {}).items()))
            run_node = node.add(f"run {run.get('id')}" + (f": {metrics}" if metrics else ""))
            for data in stage["datasets"]:
                run_node.add(
                    f"dataset {data['name']} digest {data['digest']} ({data['context']}) "
                    f"{data['source']}"
                )
    out.print(tree, highlight=False)


@app.command()
def replay(
    request_id: Annotated[str, typer.Argument(help="The stored request's id (its trace id)")],
    model: Annotated[str, typer.Option(help="World-model name to compare with")],
    version: Annotated[str, typer.Option(help="World-model version to compare with")],
    input: Annotated[
        str | None,
        typer.Option(
            help="The request's input as JSON, when it was not retained; its "
            "fingerprint must match the stored one"
        ),
    ] = None,
    project: Annotated[str, typer.Option(help="The request's project")] = "default",
) -> None:
    """Re-run a stored request through the reference stack with another world-model version
    and print both decisions side by side.

    Example: [bold]warden replay 5b8e...c60c --model booking-world-model --version 4[/bold]
    """
    import json

    from app import queries
    from collectors import conventions as wire
    from collectors import fingerprint
    from examples.booking.replay import replay as run_replay

    settings = Settings()
    with database() as engine:
        pid = projects.project_id(engine, project)
        detail = queries.get_request(engine, pid, request_id)
        # Retained inputs are sealed under their subject's key (app/audit/erasure.py).
        kept = erasure.read_input(
            erasure.attach(engine, settings.server_secret()), pid, detail["trace_id"]
        )
    root = next((s for s in detail["spans"] if s["parent_span_id"] is None), None)
    retained = kept.text or (root["attributes"].get(wire.REQUEST_INPUT) if root else None)
    text = input or retained
    if text is None:
        if kept.state == "erased":
            err.print(
                "error: the request's input was erased (its subject's key was destroyed): "
                "pass it with --input JSON"
            )
        else:
            err.print("error: the request's input was not retained: pass it with --input JSON")
        raise typer.Exit(2)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        err.print(f"error: --input is not JSON: {exc}")
        raise typer.Exit(2) from None
    secret = (
        os.environ.get("WARDEN_FINGERPRINT_SECRET")
        or settings.local_secret("fingerprint.key").decode()
    )
    if input is not None and fingerprint(value, secret.encode()) != detail["fingerprint"]:
        err.print("error: --input does not match the stored request's fingerprint")
        raise typer.Exit(1)
    served = detail["models"].get("world_model")
    if not served:
        err.print("error: the request names no world_model version to compare with")
        raise typer.Exit(1)
    pairs = [(served["name"], served["version"]), (model, version)]
    results = run_replay(str(value.get("text", "")), settings.resolved_mlflow_tracking_uri, pairs)
    table = Table("", *(f"{r.name} v{r.version}" for r in results))
    table.add_row("answer", *(r.kind for r in results))
    table.add_row(
        "chosen", *(r.decision.chosen.label if r.decision.chosen else "-" for r in results)
    )
    table.add_row("confidence", *(f"{r.decision.confidence:.3f}" for r in results))
    for i in range(3):
        table.add_row(
            f"candidate {i + 1}",
            *(
                f"{c.label} {c.score:.3f} p(conflict)={c.predicted.conflict_probability:.2f}"
                if (c := _ranked(r.decision, i))
                else "-"
                for r in results
            ),
        )
    policies = policy_set(settings)
    verdicts = [
        [v for v in policies.evaluate("post_decision", _decision_context(r.decision)) if v.fired]
        for r in results
    ]
    table.add_row(
        "policies",
        *(
            ", ".join(f"{v.policy_id}: {v.effect.value}" for v in vs) or "all allow"
            for vs in verdicts
        ),
    )
    out.print(table, highlight=False)
    same = results[0].decision.to_record() == results[1].decision.to_record()
    out.print("same decision" if same else "the decisions differ")


def _ranked(decision: Any, i: int) -> Any:
    ranked = sorted(decision.candidates, key=lambda c: c.score, reverse=True)
    return ranked[i] if i < len(ranked) else None


def _decision_context(decision: Any) -> dict[str, Any]:
    record = decision.to_record()
    chosen = next((c for c in record["candidates"] if c["action"] == record["chosen"]), None)
    return {"decision": record, "predicted": chosen["predicted"] if chosen else {}}


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
