"""`warden demo` and `warden replay`: a hybrid stack run against Warden, and a stored request
re-run through it with another world-model version.

Warden does not know the stack. Both commands reach it through a `module:callable` read from
the settings at the moment the command runs, as the gateway reaches `WARDEN_STACK`:
`WARDEN_DEMO` (default `examples.booking.demo:run`) and `WARDEN_REPLAY` (default
`examples.booking.replay:replay`, both the reference booking assistant's). The callables meet
the contracts below: `DemoRun` returning a `DemoOutcome`, and `Replay` returning one
`ReplayedDecision`-shaped mapping per version asked for.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, Protocol, cast, runtime_checkable

import typer
import uvicorn
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from rich.table import Table
from sqlalchemy import Engine

from app import entry_points
from app.audit import erasure
from app.cli.resources import database, err, out, policy_set
from app.config import Settings
from app.errors import WardenError
from app.tenancy import projects
from collectors import conventions as wire


@runtime_checkable
class DemoOutcome(Protocol):
    """What a demo run returns: how many requests it sent, how many ended each way (by answer
    kind), whether the SDK delivered everything, and the SDK's counters (`collectors.stats()`).
    A run that started an experiment may also name it in an `experiment` attribute (a str):
    `warden demo` then tells the user how to show its result.
    """

    @property
    def requests(self) -> int: ...
    @property
    def outcomes(self) -> Mapping[str, int]: ...
    @property
    def delivered(self) -> bool: ...
    @property
    def stats(self) -> Mapping[str, object]: ...


class DemoRun(Protocol):
    """The `WARDEN_DEMO` callable: run the stack, instrumented with `collectors`, against
    `endpoint`, sending spans with `api_key` (a key with the ingest scope).

    It gets the MLflow `tracking_uri` its models are registered in, the
    `fingerprint_secret` and `spool_dir` to pass to `collectors.init`, `requests` to send
    (None: a stream until Ctrl-C, which it catches and then stops), `shift` (traffic unlike the
    training data), the `seed` of the generated requests, `rate` (requests per second of a
    stream; None when `requests` is given), `progress` (called with the count sent so far) and
    `log` (one line of news for the user, e.g. that a model was trained). It flushes the SDK
    before it returns.

    `experiment` is passed only when the user asks for one (`--experiment`), so a stack that
    runs no experiments need not take it: "ab" (the champion world model against a
    challenger), "aa" (the champion against itself) or "shadow" (the challenger in the
    champion's shadow). The stack then starts that experiment through the service's API
    (`POST /v1/experiments`; `api_key` then also has the admin scope) before it sends traffic.

        def run(endpoint, api_key, tracking_uri, *, fingerprint_secret, spool_dir,
                requests, shift, seed, rate, progress, log, experiment=None) -> DemoOutcome: ...
    """

    def __call__(
        self,
        endpoint: str,
        api_key: str,
        tracking_uri: str,
        /,
        *,
        fingerprint_secret: str,
        spool_dir: Path,
        requests: int | None,
        shift: bool,
        seed: int,
        rate: float | None,
        progress: Callable[[int], None],
        log: Callable[[str], None],
        experiment: str | None = None,
    ) -> DemoOutcome: ...


class DemoExperiment(StrEnum):
    """The experiments `warden demo --experiment` can start."""

    AB = "ab"
    AA = "aa"
    SHADOW = "shadow"


class CandidateRecord(BaseModel):
    """One entry of a decision's `candidates`, as in the `planner.candidates` attribute."""

    model_config = ConfigDict(extra="allow")
    action: str
    score: float
    predicted: dict[str, Any] = Field(default_factory=dict)
    feasible: bool = True


class DecisionRecord(BaseModel):
    """A planner's decision in the shape `collectors.decision` sends it (`planner.*`)."""

    model_config = ConfigDict(extra="allow")
    candidates: list[CandidateRecord]
    chosen: str | None = None
    confidence: float | None = None
    constraints: list[Any] = Field(default_factory=list)
    rationale: str | None = None

    def record(self) -> dict[str, Any]:
        """The record as the callable gave it (defaults it left out stay out)."""
        return self.model_dump(exclude_unset=True)


class ReplayedDecision(BaseModel):
    """What a replay returns per version: the model `name` and `version` it ran with, the
    answer's `kind` (e.g. booked, counter_proposal, clarify) and the `decision` record."""

    name: str
    version: str
    kind: str
    decision: DecisionRecord


class Replay(Protocol):
    """The `WARDEN_REPLAY` callable: answer a stored request's `input` (its JSON value, as
    the stack received it) once per `(model name, version)` of the world model, loaded from
    MLflow at `tracking_uri`, each on the same fresh state, changing and recording nothing.

    It returns, in the order of `versions`, one mapping per version shaped like
    `ReplayedDecision`, e.g. `{"name": "booking-world-model", "version": "4", "kind": "booked",
    "decision": {"candidates": [{"action": "room-3 15:00", "score": 0.91, "predicted":
    {"conflict_probability": 0.02}, "feasible": True}], "chosen": "room-3 15:00",
    "confidence": 0.87}}`. The table ranks the candidates by score (equal scores keep the
    order given) and shows the best three: action, score, and `p(conflict)` when the predicted
    outcomes carry `conflict_probability` (the figure the built-in `risk-cap` policy caps).
    Figures may be given unrounded: the table rounds them once. The `post_decision` policies
    judge each decision, with the chosen candidate's `predicted` as `predicted`; "same
    decision" means the two decision records are equal.

        def replay(input, tracking_uri, versions) -> list[dict]: ...
    """

    def __call__(
        self, input: Any, tracking_uri: str, versions: list[tuple[str, str]], /
    ) -> Sequence[Mapping[str, Any]]: ...


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"error: {message}", highlight=False)
    raise typer.Exit(code)


def load_entry_point(setting: str, spec: str) -> Callable[..., Any]:
    """The callable a `module:callable` setting names; a one-line error and exit 1 if none."""
    try:
        return entry_points.load(setting, spec)
    except entry_points.EntryPointError as exc:
        _fail(str(exc))


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
    experiment: Annotated[
        DemoExperiment | None,
        typer.Option(
            help="Start an experiment on the world model first and send the traffic through "
            "it: ab (champion against the challenger), aa (champion against itself), shadow "
            "(the challenger in the champion's shadow). With --endpoint, --api-key needs the "
            "admin scope"
        ),
    ] = None,
) -> None:
    """Run the reference hybrid stack (a booking assistant) against Warden.

    Trains the world model and registers it in MLflow on first run (cached afterwards),
    starts the service on the embedded defaults, and sends demo requests through the
    instrumented stack: a steady stream, or --requests N and stop.

    Example: [bold]warden demo --requests 200[/bold]
    Example: [bold]warden demo --requests 600 --experiment ab[/bold]
    Example: [bold]warden demo --endpoint http://warden:8000 --api-key wdn_... --shift[/bold]
    """
    settings = Settings()
    if endpoint and not api_key:
        err.print("[red]error:[/red] --endpoint needs --api-key (a key with the ingest scope)")
        raise typer.Exit(2)
    run = cast(DemoRun, load_entry_point("WARDEN_DEMO", settings.demo))
    server = None
    if endpoint is None:
        with database() as engine:
            first_key = projects.ensure_default_project(engine, settings.server_secret())
            api_key = _demo_key(engine, settings, admin=experiment is not None)
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
        _run_demo(run, settings, endpoint, api_key, requests, shift, rate, seed, experiment)
    finally:
        if server is not None:
            server.should_exit = True


def _run_demo(
    run: DemoRun,
    settings: Settings,
    endpoint: str,
    api_key: str,
    requests: int | None,
    shift: bool,
    rate: float,
    seed: int,
    experiment: DemoExperiment | None = None,
) -> None:
    from rich.progress import Progress

    # Only when asked for: a stack that runs no experiments need not take the argument.
    asked = {"experiment": experiment.value} if experiment is not None else {}

    with Progress(console=out, transient=True) as bar:
        task = bar.add_task("demo requests", total=requests)
        result = run(
            endpoint,
            api_key,
            settings.resolved_mlflow_tracking_uri,
            fingerprint_secret=settings.fingerprint_key().decode(),
            spool_dir=settings.data_dir / "spool",
            requests=requests,
            shift=shift,
            seed=seed,
            rate=None if requests else rate,
            progress=lambda n: bar.update(task, completed=n),
            log=lambda line: bar.console.print(line, highlight=False),
            **asked,
        )
    if not isinstance(result, DemoOutcome):
        _fail(f"WARDEN_DEMO={settings.demo!r} returned {type(result).__name__}, not a demo outcome")
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(result.outcomes.items()))
    delivered = "all delivered" if result.delivered else "some still in the spool"
    out.print(f"{result.requests} requests ({outcomes}); {delivered}. SDK: {result.stats}")
    # A stack that started an experiment may name it (the reference one does): say where its
    # result is, which is what a newcomer running an experiment came to see.
    started = getattr(result, "experiment", None)
    if experiment is not None and isinstance(started, str):
        out.print(
            f"The experiment's result: warden experiment show {started} "
            f"(or GET {endpoint}/v1/experiments/{started} while the service runs)",
            highlight=False,
        )


def _demo_key(engine: Engine, settings: Settings, *, admin: bool = False) -> str:
    """The demo's own ingest+read key for `default`, kept in `<data_dir>/demo.key`; with
    `admin` (an experiment to start), an admin key kept in `<data_dir>/demo-admin.key`."""
    path = settings.data_dir / ("demo-admin.key" if admin else "demo.key")
    if path.exists():
        key = path.read_text().strip()
        try:
            projects.authenticate(engine, settings.server_secret(), f"Bearer {key}")
            return key
        except WardenError:
            pass  # revoked, or made under another server secret: make a new one
    scopes = ["ingest", "read", "admin"] if admin else ["ingest", "read"]
    key = projects.create_key(
        engine, settings.server_secret(), projects.DEFAULT_PROJECT, scopes, path.stem
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
    from app.store import queries
    from collectors import fingerprint

    settings = Settings()
    with database() as engine:
        pid = projects.project_id(engine, project)
        detail = queries.get_request(engine, pid, request_id)
        # Retained inputs are sealed under their subject's key (app/audit/erasure.py).
        kept = erasure.read_input(
            engine, erasure.Vault(settings.server_secret()), pid, detail.trace_id
        )
    root = next((s for s in detail.spans if s.parent_span_id is None), None)
    retained = kept.text or (root.attributes.get(wire.REQUEST_INPUT) if root else None)
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
    if input is not None and fingerprint(value, settings.fingerprint_key()) != detail.fingerprint:
        err.print("error: --input does not match the stored request's fingerprint")
        raise typer.Exit(1)
    served = detail.models.get("world_model")
    if not served:
        err.print("error: the request names no world_model version to compare with")
        raise typer.Exit(1)
    pairs = [(served.name, served.version), (model, version)]
    run_replay = cast(Replay, load_entry_point("WARDEN_REPLAY", settings.replay))
    returned = run_replay(value, settings.resolved_mlflow_tracking_uri, pairs)
    results = _replayed(settings.replay, returned, len(pairs))
    table = Table("", *(f"{r.name} v{r.version}" for r in results))
    table.add_row("answer", *(r.kind for r in results))
    table.add_row("chosen", *(r.decision.chosen or "-" for r in results))
    table.add_row("confidence", *(_figure(r.decision.confidence) for r in results))
    for i in range(3):
        table.add_row(
            f"candidate {i + 1}",
            *(_candidate_cell(c) if (c := _ranked(r.decision, i)) else "-" for r in results),
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
    same = results[0].decision.record() == results[1].decision.record()
    out.print("same decision" if same else "the decisions differ")


_REPLAYED = TypeAdapter(list[ReplayedDecision])


def _replayed(spec: str, returned: Any, expected: int) -> list[ReplayedDecision]:
    """The replay's answer checked against the contract: one decision per version."""
    try:
        results = _REPLAYED.validate_python(returned)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the answer"
        msg = first["msg"]
        _fail(f"WARDEN_REPLAY={spec!r} returned no list of replayed decisions: {where}: {msg}")
    if len(results) != expected:
        _fail(f"WARDEN_REPLAY={spec!r} returned {len(results)} decisions for {expected} versions")
    return results


def _ranked(decision: DecisionRecord, i: int) -> CandidateRecord | None:
    ranked = sorted(decision.candidates, key=lambda c: c.score, reverse=True)
    return ranked[i] if i < len(ranked) else None


def _candidate_cell(candidate: CandidateRecord) -> str:
    cell = f"{candidate.action} {candidate.score:.3f}"
    conflict = candidate.predicted.get("conflict_probability")
    if isinstance(conflict, int | float):
        cell += f" p(conflict)={conflict:.2f}"
    return cell


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _decision_context(decision: DecisionRecord) -> dict[str, Any]:
    record = decision.record()
    chosen = next((c for c in record["candidates"] if c["action"] == record.get("chosen")), None)
    return {"decision": record, "predicted": chosen.get("predicted", {}) if chosen else {}}
