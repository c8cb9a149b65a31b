"""Warden's instrumentation SDK: a few lines in the inference code record every request.

>>> import collectors
>>> collectors.init(endpoint="http://127.0.0.1:8000", api_key="wdn_...",
...                 fingerprint_secret="a long random string")            # doctest: +SKIP
>>> collectors.model("world_model", "models:/booking-world-model@champion")  # doctest: +SKIP
>>> watch = collectors.watch(world_model, layers=["encoder", "transition"])  # doctest: +SKIP
>>> with collectors.request({"text": text}, subject="u-17") as req:         # doctest: +SKIP
...     with collectors.llm_call(system="offline", request_model="intent-parser") as call:
...         intent = parser.parse(text)
...     plan = planner.plan(intent)          # world-model states are captured by the hooks
...     collectors.decision(plan.candidates, plan.chosen, plan.constraints)
...     req.set_outcome("booked")

Every request becomes OpenTelemetry spans under the names of docs/conventions.md, exported
over OTLP/HTTP by a background thread; when the service is away they wait in an on-disk
spool. Recording never raises into the caller (except `RecordNotDurable` in fail-closed
mode) and never waits on the network.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from collectors import _client
from collectors._client import Client, ModelRef, init, shutdown
from collectors._scope import (
    LLMCall,
    Request,
    decision,
    features,
    llm_call,
    model,
    recorded,
    request,
    stage,
)
from collectors._transport import Outcome, Result, Sender
from collectors._watch import Watch
from collectors.errors import CollectorError, ConfigurationError, RecordNotDurable
from collectors.fingerprint import canonical_json, fingerprint
from policies import PolicyDenied, PolicyError

__all__ = [
    "Client",
    "CollectorError",
    "ConfigurationError",
    "LLMCall",
    "ModelRef",
    "Outcome",
    "PolicyDenied",
    "PolicyError",
    "RecordNotDurable",
    "Request",
    "Result",
    "Sender",
    "Watch",
    "canonical_json",
    "decision",
    "features",
    "fingerprint",
    "flush",
    "init",
    "llm_call",
    "model",
    "recorded",
    "request",
    "shutdown",
    "stage",
    "stats",
    "watch",
]


def watch(
    module: nn.Module,
    layers: list[str],
    every: int = 1,
    dim: int = 16,
    tensor_sample_rate: float = 0.0,
    seed: int = 0,
) -> Watch:
    """Capture the latent states of `module`'s submodules `layers` during requests.

    Each forward call of a watched layer inside a request is a step; every `every`-th step is
    summarised (mean, std, min, max, L2 norm) and projected to `dim` values by a fixed random
    projection seeded by `seed`. Full tensors are exported for a `tensor_sample_rate` share of
    steps. `remove()` the handle (or use it in a `with` block) to unhook.

    >>> handle = collectors.watch(model, layers=["encoder", "transition"], dim=16)  # doctest: +SKIP
    >>> handle.remove()                                                        # doctest: +SKIP
    """
    return Watch(module, layers, every, dim, tensor_sample_rate, seed)


def flush(timeout: float = 10.0, include_spool: bool = False) -> bool:
    """Wait until what was recorded so far is delivered or spooled; with `include_spool`,
    until the spool is empty too (the service has everything). True if done in time.

    >>> collectors.flush(timeout=5)  # doctest: +SKIP
    True
    """
    client = _client.active()
    return client.flush(timeout, include_spool) if client else True


def stats() -> dict[str, Any]:
    """Counters of what the SDK did with the spans it recorded: queued, exported, spooled,
    replayed, rejected (refused for good by the service), dropped (only if the spool was
    full), plus what waits in the spool now.

    >>> collectors.stats()["dropped"]  # doctest: +SKIP
    0
    """
    client = _client.active()
    if client is None or client.pipeline is None:
        return {}
    pipeline = client.pipeline
    rows, spans = pipeline.spool.pending()
    return {
        **pipeline.counters.as_dict(),
        "spool_pending_batches": rows,
        "spool_pending_spans": spans,
        "spool_corrupt_batches": pipeline.spool.corrupt,
    }
