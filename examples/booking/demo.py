"""Demo traffic: the instrumented booking assistant answering generated requests.

`warden demo` runs `run` against the service it starts (or against `--endpoint`), reaching
it through `WARDEN_DEMO` (default `examples.booking.demo:run`; the contract `run` meets is
`DemoRun` in app/cli/demo.py); it can also be run on its own:
`python -m examples.booking.demo --help`.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import collectors

from .instrumented import InstrumentedAssistant
from .phrasings import GeneratedRequest, generate_requests
from .registry import TrainingSpec, load_world_model, register_world_model

# The documented distribution shift of `--shift` (see examples/booking/README.md).
SHIFT = 1.0
SUBJECTS = 50


@dataclass
class DemoResult:
    requests: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    texts: list[str] = field(default_factory=list)
    delivered: bool = False
    stats: dict[str, object] = field(default_factory=dict)


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
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Train and register the world model (cached), then send demo requests through the
    instrumented assistant: `requests` of them, or until interrupted."""
    started = time.perf_counter()
    registered = register_world_model(spec, tracking_uri)
    how = "reused" if registered.reused else f"trained in {time.perf_counter() - started:.0f}s"
    log(f"world model {registered.name} v{registered.version} ({how}), {registered.model_uri}")
    collectors.init(
        endpoint=endpoint,
        api_key=api_key,
        fingerprint_secret=fingerprint_secret,
        spool_dir=spool_dir,
        service_name="booking-assistant",
        project=None,
    )
    # What the stack serves is what the alias points at now, resolved once at load time.
    ref = collectors.model(
        "world_model", f"models:/{registered.name}@champion", tracking_uri=tracking_uri
    )
    loaded = load_world_model(tracking_uri, f"models:/{ref.name}/{ref.version}")
    assistant = InstrumentedAssistant(loaded.model, ref.name, ref.version)
    result = DemoResult()
    interval = 1.0 / rate if rate else 0.0
    try:
        # True is the demo's --shift; a number is a shift size of its own (sim.py).
        level = SHIFT if shift is True else float(shift)
        stream = _stream(seed, level)
        chosen = stream if requests is None else itertools.islice(stream, requests)
        for n, generated in enumerate(chosen):
            answer = assistant.handle(generated.text, subject=f"user-{n % SUBJECTS:03d}")
            result.requests += 1
            result.outcomes[answer.kind] += 1
            result.texts.append(generated.text)
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
    return result


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
    )
    print(f"{result.requests} requests: {dict(result.outcomes)}; delivered={result.delivered}")


if __name__ == "__main__":
    main()
