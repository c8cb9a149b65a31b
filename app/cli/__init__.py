"""The `warden` command line: the root command, and every command and group in the order
`warden --help` lists them. Each module of this package owns one group of commands:

- `serve`: `warden serve`, `warden migrate`
- `projects`: `warden project`, `warden key`
- `policy`: `warden policy` (lint, test, explain)
- `models`: `warden promote`, `warden rollback`, `warden lineage`
- `demo`: `warden demo`, `warden replay`, run through a stack named in the settings
- `drift`: `warden drift` (run, list, configure)
- `experiment_settings`: `warden experiment configure`
- `audit`: `warden audit`, `warden erase`, `warden retention`, `warden hold`
- `exports`: `warden export`, `warden verify`
- `keys`: `warden keys` (init, show, rotate): the secrets a deployment shares
- `experiments`: `warden experiment` (create, list, show, stop)
- `resources`: what the commands share (the consoles, the configured database, the policies)
"""

from __future__ import annotations

import sys

import typer

from app.cli import (
    audit,
    demo,
    drift,
    experiment_settings,
    experiments,
    exports,
    keys,
    models,
    policy,
    projects,
    serve,
)

app = typer.Typer(
    help="Warden: observability and governance for hybrid AI inference stacks.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
# Commands first, then groups: `warden --help` lists them each in this order.
app.command("erase")(audit.erase)
app.command("export")(exports.export)
app.command("verify")(exports.verify)
app.command("migrate")(serve.migrate)
app.command("serve")(serve.serve)
app.command("demo")(demo.demo)
app.command("promote")(models.promote)
app.command("rollback")(models.rollback)
app.command("lineage")(models.lineage_tree)
app.command("replay")(demo.replay)
app.add_typer(projects.project_app, name="project")
app.add_typer(projects.key_app, name="key")
app.add_typer(policy.policy_app, name="policy")
app.add_typer(drift.drift_app, name="drift")
experiments.experiment_app.command("configure")(experiment_settings.configure)
app.add_typer(experiments.experiment_app, name="experiment")
app.add_typer(audit.audit_app, name="audit")
app.add_typer(audit.retention_app, name="retention")
app.add_typer(audit.hold_app, name="hold")
app.add_typer(keys.keys_app, name="keys")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
