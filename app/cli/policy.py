"""`warden policy`: lint and test policy files, explain a stored request's verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from app.cli.resources import database, err, out, policy_set
from app.config import Settings
from app.tenancy import projects
from policies import PolicyLoadError, PolicySet, run_tests

policy_app = typer.Typer(help="Check and test policy files (policy-as-code).", no_args_is_help=True)

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
    from app.store import queries

    settings = Settings()
    current = {p.id: p.hash for p in policy_set(settings).policies}
    with database() as engine:
        detail = queries.get_request_record(
            engine, projects.project_id(engine, project), request_id
        )
    evaluations = detail.policy_evaluations
    out.print(
        f"request {detail.request_id}: outcome {detail.outcome}, "
        f"{len(evaluations)} policy evaluations",
        highlight=False,
    )
    table = Table("phase", "policy", "version", "outcome", "message", "in force now")
    for e in evaluations:
        now = current.get(e.policy_id)
        state = "yes" if now == e.policy_hash else ("changed" if now else "removed")
        table.add_row(
            e.phase, e.policy_id, e.policy_version or "", e.outcome, e.message or "", state
        )
    out.print(table)
