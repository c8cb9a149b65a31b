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
...     for arm in req.assignment("world_model").shadows:  # a candidate, in the shadow
...         collectors.shadow(arm, lambda arm=arm: challenger(arm.model).handle(text))

Every request becomes OpenTelemetry spans under the names of docs/conventions.md (in code:
`collectors.conventions`), exported over OTLP/HTTP by a background thread; when the service is
away they wait in an on-disk spool. Recording never raises into the caller (except
`RecordNotDurable` in fail-closed mode) and never waits on the network.

Importing the package loads only its exceptions and the fingerprint: every other public name
is imported on first use (PEP 562), so `collectors.conventions` costs its readers nothing.
torch is imported by `collectors.watch()` alone (the module `collectors.torch`); without it,
`watch()` raises `ConfigurationError` saying what to install. `collectors.Watch` resolves the
same way, which is why it is left out of `__all__`.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from collectors.errors import CollectorError, ConfigurationError, RecordNotDurable
from collectors.fingerprint import canonical_json, fingerprint

if TYPE_CHECKING:
    from torch import nn

    from collectors._client import Client, ModelRef, flush, init, shutdown, stats
    from collectors._retrieval import Retrieval, retrieval
    from collectors._scope import (
        LLMCall,
        Request,
        decision,
        features,
        intent,
        llm_call,
        model,
        recorded,
        request,
        request_trace_id,
        stage,
    )
    from collectors._scores import score
    from collectors._shadow import shadow
    from collectors._transport import Outcome, Result, Sender
    from collectors.experiments import Assignment, ShadowArm
    from collectors.torch import Watch as Watch
    from policies import PolicyDenied, PolicyError

__all__ = [
    "Assignment",
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
    "Retrieval",
    "Sender",
    "ShadowArm",
    "canonical_json",
    "decision",
    "features",
    "fingerprint",
    "flush",
    "init",
    "intent",
    "llm_call",
    "model",
    "recorded",
    "request",
    "request_trace_id",
    "retrieval",
    "score",
    "shadow",
    "shutdown",
    "stage",
    "stats",
    "watch",
]

# Where each public name lives. The first access imports the module and keeps the name here,
# so later accesses are plain attribute reads.
_HOMES = {
    name: module
    for module, names in (
        ("collectors._client", ("Client", "ModelRef", "flush", "init", "shutdown", "stats")),
        (
            "collectors._scope",
            (
                "LLMCall",
                "Request",
                "decision",
                "features",
                "intent",
                "llm_call",
                "model",
                "recorded",
                "request",
                "request_trace_id",
                "stage",
            ),
        ),
        ("collectors._retrieval", ("Retrieval", "retrieval")),
        ("collectors._scores", ("score",)),
        ("collectors._shadow", ("shadow",)),
        ("collectors._transport", ("Outcome", "Result", "Sender")),
        ("collectors.experiments", ("Assignment", "ShadowArm")),
        ("collectors.torch", ("Watch",)),
        ("policies", ("PolicyDenied", "PolicyError")),
    )
    for name in names
}

_TORCH_NEEDED = (
    "collectors.watch() needs PyTorch, which is not installed here: pip install torch "
    "(or the SDK with its extra: pip install 'warden-collectors[torch]')"
)


def _torch_module() -> ModuleType:
    try:
        return importlib.import_module("collectors.torch")
    except ModuleNotFoundError as exc:
        if exc.name != "torch" and not (exc.name or "").startswith("torch."):
            raise
        raise ConfigurationError(_TORCH_NEEDED) from exc


if not TYPE_CHECKING:
    # Hidden from type checkers, which see the imports above: a misspelt name stays an error.

    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module 'collectors' has no attribute {name!r}")
        module = _torch_module() if home == "collectors.torch" else importlib.import_module(home)
        value = getattr(module, name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})


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
    steps. `remove()` the handle (or use it in a `with` block) to unhook. Needs PyTorch
    (`pip install 'warden-collectors[torch]'`); without it this raises `ConfigurationError`.

    >>> handle = collectors.watch(model, layers=["encoder", "transition"], dim=16)  # doctest: +SKIP
    >>> handle.remove()                                                        # doctest: +SKIP
    """
    handle: Watch = _torch_module().Watch(module, layers, every, dim, tensor_sample_rate, seed)
    return handle
