"""Demo traffic: the instrumented booking assistant answering generated requests.

`warden demo` runs `run` against the service it starts (or against `--endpoint`), reaching
it through `WARDEN_DEMO` (default `examples.booking.demo:run`; the contract `run` meets is
`DemoRun` in app/cli/demo.py); it can also be run on its own:
`python -m examples.booking.demo --help`.

Every run registers the champion and the challenger (`registry.CHALLENGER_SPEC`) world models.
With `experiment` ("ab", "aa" or "shadow") it first starts an experiment on the world-model
stage through the service's API (`POST /v1/experiments`, with an admin key), then sends the
traffic through `ExperimentAssistant`, which serves each request with the world model of the
arm the SDK assigned it and runs the sampled shadow arms after the answer.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import collectors

from .experiments import STAGE, ExperimentAssistant, WorldModels
from .instrumented import InstrumentedAssistant
from .phrasings import GeneratedRequest, generate_requests
from .registry import (
    CHAMPION,
    RegisteredWorldModel,
    TrainingSpec,
    load_world_model,
    register_challenger,
    register_world_model,
)

# The documented distribution shift of `--shift` (see examples/booking/README.md).
SHIFT = 1.0
SUBJECTS = 50
# In an experiment every request comes from a subject of its own: with 50 sticky subjects the
# arms' shares of requests would move in steps of 2%, and the sample-ratio check would see it.
EXPERIMENT_SUBJECTS = 1_000_000
EXPERIMENTS = ("ab", "aa", "shadow")
DEMO_PREFIX = "demo-"


@dataclass
class DemoResult:
    requests: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    texts: list[str] = field(default_factory=list)
    delivered: bool = False
    stats: dict[str, object] = field(default_factory=dict)
    # The experiment the run started (its name), and the answers of each arm it served.
    experiment: str | None = None
    arms: dict[str, Counter[str]] = field(default_factory=dict)


def _stream(seed: int, shift: float) -> Iterator[GeneratedRequest]:
    """An endless, seeded stream of requests, generated a thousand at a time."""
    for block in itertools.count():
        yield from generate_requests(1000, seed=seed * 1_000_003 + block, shift=shift)


def run(
    endpoint: str,
    api_key: str,
    tracking_uri: str,
    *,
    fingerprint_secret: str,
    spool_dir: Path,
    requests: int | None = None,
    shift: bool | float = False,
    seed: int = 0,
    rate: float | None = None,
    spec: TrainingSpec | None = None,
    challenger_spec: TrainingSpec | None = None,
    experiment: str | None = None,
    salt: str | None = None,
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Train and register the champion and challenger world models (cached), start the
    `experiment` if asked ("ab", "aa" or "shadow"), then send demo requests through the
    instrumented assistant: `requests` of them, or until interrupted. `salt` fixes the
    experiment's assignment hash (random otherwise), so a seeded run splits alike each time."""
    if experiment is not None and experiment not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {', '.join(EXPERIMENTS)}, not {experiment!r}")
    started = time.perf_counter()
    registered = register_world_model(spec, tracking_uri)
    log(_registered_line("world model", registered, started))
    started = time.perf_counter()
    challenger = register_challenger(tracking_uri, challenger_spec)
    log(_registered_line("challenger", challenger, started))
    result = DemoResult()
    if experiment is not None:
        body = experiment_body(experiment, registered, challenger, salt=salt)
        result.experiment = start_experiment(endpoint, api_key, body)
        log(f"experiment {result.experiment}: {endpoint}/v1/experiments/{result.experiment}")
    collectors.init(
        endpoint=endpoint,
        api_key=api_key,
        fingerprint_secret=fingerprint_secret,
        spool_dir=spool_dir,
        service_name="booking-assistant",
        project=None,
        # The service's bundle brings the running experiments along with the policies.
        policies="service" if experiment is not None else None,
        # A counted run sends as fast as it can, leaving the shadow worker no idle time: room
        # for all its shadows, so every request gets one (they run by the final flush).
        shadow_queue=requests if experiment == "shadow" and requests else None,
    )
    # What the stack serves is what the alias points at now, resolved once at load time.
    ref = collectors.model(
        "world_model", f"models:/{registered.name}@{CHAMPION}", tracking_uri=tracking_uri
    )
    assistant: InstrumentedAssistant
    if experiment is None:
        loaded = load_world_model(tracking_uri, f"models:/{ref.name}/{ref.version}")
        assistant = InstrumentedAssistant(loaded.model, ref.name, ref.version)
    else:
        models = WorldModels(tracking_uri)
        models.preload([registered.model_uri, challenger.model_uri])
        assistant = ExperimentAssistant(models, f"models:/{ref.name}/{ref.version}")
    # Declared again through the registry (the assistant declared it by version only): the
    # policies of an experiment's run then see its aliases and tags.
    collectors.model("world_model", f"models:/{ref.name}/{ref.version}", tracking_uri=tracking_uri)
    subjects = SUBJECTS if experiment is None else EXPERIMENT_SUBJECTS
    interval = 1.0 / rate if rate else 0.0
    try:
        # True is the demo's --shift; a number is a shift size of its own (sim.py).
        level = SHIFT if shift is True else float(shift)
        stream = _stream(seed, level)
        # Other people book and cancel between the demo's requests, so its calendar holds a
        # steady state instead of filling up as the run goes (sim.Calendar.churn).
        others = np.random.default_rng(seed)
        chosen = stream if requests is None else itertools.islice(stream, requests)
        for n, generated in enumerate(chosen):
            try:
                kind: str = assistant.handle(
                    generated.text, subject=f"user-{n % subjects:03d}"
                ).kind
            except collectors.PolicyDenied:
                kind = "denied"  # refused before it was planned (policies run in experiments)
            assistant.calendar.churn(others)
            result.requests += 1
            result.outcomes[kind] += 1
            result.texts.append(generated.text)
            if isinstance(assistant, ExperimentAssistant) and assistant.last_arm is not None:
                result.arms.setdefault(assistant.last_arm, Counter())[kind] += 1
            if progress:
                progress(n + 1)
            if interval:
                time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        assistant.close()
        result.delivered = collectors.flush(timeout=60, include_spool=True)
        result.stats = collectors.stats()
        collectors.shutdown()
    for arm, kinds in sorted(result.arms.items()):
        total = sum(kinds.values())
        log(f"arm {arm}: {total} requests, {kinds['booked'] / total:.0%} booked")
    return result


def _registered_line(what: str, registered: RegisteredWorldModel, started: float) -> str:
    how = "reused" if registered.reused else f"trained in {time.perf_counter() - started:.0f}s"
    return f"{what} {registered.name} v{registered.version} ({how}), {registered.model_uri}"


def experiment_body(
    kind: str,
    champion: RegisteredWorldModel,
    challenger: RegisteredWorldModel,
    *,
    salt: str | None = None,
) -> dict[str, Any]:
    """The `POST /v1/experiments` body of a demo experiment on the world model.

    "ab": the champion (control) against the challenger, half the subjects each, with the
    deny and review rates and the p95 latency as guardrails. "aa": the champion against
    itself, which must come out inconclusive. "shadow": the champion answers every request
    and the challenger runs in its shadow on all of them. Without `salt`, the service draws
    a random one.

    >>> v1 = RegisteredWorldModel("wm", "1", "r1", "h1", True, "d", "x")
    >>> v2 = RegisteredWorldModel("wm", "2", "r2", "h2", True, "d", "y")
    >>> [a["model"] for a in experiment_body("ab", v1, v2)["arms"]]
    ['models:/wm/1', 'models:/wm/2']
    """
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    control = {"name": "champion", "model": champion.model_uri, "weight": 1.0}
    if kind == "ab":
        arms = [control, {"name": "challenger", "model": challenger.model_uri, "weight": 1.0}]
        shadows: list[dict[str, Any]] = []
    elif kind == "aa":
        arms = [control, {"name": "champion-again", "model": champion.model_uri, "weight": 1.0}]
        shadows = []
    elif kind == "shadow":
        arms = [control]
        shadows = [{"name": "challenger", "model": challenger.model_uri, "sample_rate": 1.0}]
    else:
        raise ValueError(f"experiment must be one of {', '.join(EXPERIMENTS)}, not {kind!r}")
    return {
        "name": f"{DEMO_PREFIX}{kind}-{stamp}",
        "description": f"warden demo --experiment {kind}",
        "stage": STAGE,
        "unit": "subject",
        "arms": arms,
        "shadows": shadows,
        "primary_kpi": "plan_success_rate",
        "guardrails": ["deny_rate", "review_rate", "latency_p95_ms"],
    } | ({"salt": salt} if salt is not None else {})


def start_experiment(endpoint: str, api_key: str, body: dict[str, Any]) -> str:
    """Create the experiment `body` describes; a demo experiment still running on its stage
    (from an earlier demo) is stopped first, any other one is left to answer 409."""
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=endpoint, headers=headers, timeout=30) as client:
        running = client.get("/v1/experiments", params={"status": "running"})
        _raise_for(running, "list the running experiments")
        for item in running.json().get("items", []):
            name = str(item.get("name"))
            if item.get("stage") == body["stage"] and name.startswith(DEMO_PREFIX):
                _raise_for(
                    client.post(f"/v1/experiments/{name}/stop"),
                    f"stop the earlier demo experiment {name}",
                )
        _raise_for(client.post("/v1/experiments", json=body), "start the experiment")
    return str(body["name"])


def _raise_for(answer: httpx.Response, doing: str) -> None:
    if answer.is_success:
        return
    try:
        detail = answer.json().get("detail", answer.text)
    except ValueError:
        detail = answer.text
    raise RuntimeError(f"could not {doing}: HTTP {answer.status_code}: {detail}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Send demo traffic to a Warden service.")
    parser.add_argument(
        "--endpoint", default=os.environ.get("WARDEN_ENDPOINT", "http://127.0.0.1:8000")
    )
    parser.add_argument("--api-key", default=os.environ.get("WARDEN_API_KEY"))
    parser.add_argument("--tracking-uri", default="sqlite:///./.warden/mlflow.db")
    parser.add_argument("--requests", type=int, default=None, help="send N requests and stop")
    parser.add_argument("--shift", action="store_true", help="traffic unlike the training data")
    parser.add_argument("--rate", type=float, default=None, help="requests per second")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--experiment", choices=EXPERIMENTS, default=None,
        help="start an experiment on the world model first (needs an admin key)",
    )  # fmt: skip
    args = parser.parse_args()
    result = run(
        args.endpoint,
        args.api_key or "",
        args.tracking_uri,
        fingerprint_secret=os.environ.get("WARDEN_FINGERPRINT_SECRET", "demo-fingerprint-secret"),
        spool_dir=Path(".warden/spool"),
        requests=args.requests,
        shift=args.shift,
        seed=args.seed,
        rate=args.rate,
        experiment=args.experiment,
    )
    print(f"{result.requests} requests: {dict(result.outcomes)}; delivered={result.delivered}")


if __name__ == "__main__":
    main()
