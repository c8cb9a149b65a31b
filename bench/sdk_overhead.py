"""SDK overhead benchmark: what recording one hybrid-stack request costs the request itself.

Run from the repository root:

    .venv/bin/python bench/sdk_overhead.py                       # 5 rounds x 400 requests
    .venv/bin/python bench/sdk_overhead.py --requests 500 --json

The reference request is the one of docs/conventions.md: a root span, a language-model stage,
a world-model rollout of 8 steps over 2 hooked layers (16 latent states) and a planner
decision over 16 candidates; about 20 spans when each latent state is a span. The work itself
is small on purpose (a stand-in LLM stage that is a regex parse, a torch world model of width
32 rolled out over a batch of 16 candidates, a scoring step), so that what is measured is the
instrumentation. Four variants run side by side in one process, each on its own copy of the
model (same weights), so that the hooks of one never run in another:

1. bare: no instrumentation at all.
2. otel: the bare OpenTelemetry SDK, with the same information as spans: a TracerProvider of
   its own (never the global one) with a BatchSpanProcessor and a no-op exporter; root span,
   an LLM span with gen_ai.* attributes, a rollout span, 16 state spans made by forward hooks
   that summarise each step on the spot (mean, std, min, max, L2 norm and a 16-value
   projection, crossing to Python with .tolist() per step, the way one would write it without
   Warden), and a planner.decide span with the candidates as JSON.
3. warden: Warden's SDK (`collectors`) against a live `warden serve` subprocess (fresh SQLite
   store): init, three `collectors.model()` at load time, `collectors.watch()` on the two
   layers, then per request `collectors.request`, `collectors.llm_call`, the rollout (the hooks
   capture) and `collectors.decision`. Its provider is a separate TracerProvider, so it never
   becomes the global one.
4. mlflow: MLflow tracing into a local SQLite tracking store, `mlflow.start_span` for the same
   spans with the same attributes (MLflow's own, isolated tracer provider).

Each variant gets a warm-up, then the measured requests run in interleaved rounds (the order of
the variants rotates each round), so machine noise hits them alike. After each variant's block
its background work is drained (and timed) before the next variant starts, so no variant's
export threads run during another's timed loop. Per-request latency is the wall time of one
whole request, the instrumentation's context exits included.

Delivery: for OpenTelemetry (no-op exporter) there is none. For Warden, the time from the end
of each block until `collectors.flush(include_spool=True)` says everything is at the service;
afterwards the service's `GET /v1/requests?limit=1` and its SQLite tables must hold every
request (nothing dropped). For MLflow, the time until `mlflow.flush_trace_async_logging()`
returns; afterwards its store is searched for the traces and spans that arrived, and what
MLflow (and the OpenTelemetry batch processor under it) logged about dropping is counted.

Shadow runs: after the main rounds, the live request with a shadow arm sampled at 100%
(`collectors.shadow`: after each answer, the SDK's shadow worker runs a challenger world model
and the planner on the same input) against the same Warden variant without one, side by side
in alternating rounds. These requests are paced: the process idles after each request (by
default twice Warden's p50), as a service with headroom does, because a shadow runs in idle
time and a closed loop has none (`--shadow-gap-us 0` shows that case: most shadows are then
dropped, by design). The shadow counters and the stored `shadow_runs` rows are printed and
checked with the rest.

torch runs with one intra-op thread (`--torch-threads`): the model gains nothing from more,
and with torch's default (one per core) on a 2-core machine, its spinning OpenMP workers next
to any Python background thread (the batch processor's, Warden's export thread, MLflow's
workers) stall requests by 80-130 ms at p95/p99, which would swamp what is measured here.

Assignment: the cost of assigning a request to the running experiments when it opens (one
experiment, two arms and a shadow arm at 100%, against none), timed call by call over 100,000
units by bench/assignment_cost.py.

It prints figures; it asserts nothing about time. Data checks of Warden's delivery do fail
the run (exit status 1).
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import copy
import gc
import hashlib
import hmac
import json
import logging
import os
import platform
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# MLflow must not phone home (its telemetry client starts when `mlflow` is imported).
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds scripts named like the packages they measure (policies.py): the repository
# root, not this folder, comes first on the import path.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
import torch
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind
from torch import nn

import collectors
from bench import assignment_cost
from bench.warden_process import (
    WARDEN,
    Server,
    count_rows,
    get_json,
    start_server,
    stop_server,
)
from collectors import conventions as wire
from collectors.experiments import ShadowArm

STEPS = 8
CANDIDATES = 16
WIDTH = 32
FEATURES = 8
DIM = 16
LAYERS = ("encoder", "transition")
STATES = STEPS * len(LAYERS)
SPANS_PER_REQUEST = 1 + 1 + 1 + STATES + 1  # root, llm, rollout, states, decision
WARDEN_SPANS_PER_REQUEST = 4  # root, llm, rollout (16 state events), decision
SECRET = b"bench fingerprint secret, a long random string"
KEY_ID = "k1"
MODELS = (
    ("llm", "intent-parser", "1"),
    ("world_model", "booking-world-model", "3"),
    ("planner", "mpc-planner", "2"),
)
TARGET_OTEL_RATIO = 1.0
TARGET_MLFLOW_FACTOR = 10.0
TARGET_SHADOW_ADDED = 0.05

# --------------------------------------------------------------------------------------------
# The request: a stand-in LLM stage, a world-model rollout, a planner decision
# --------------------------------------------------------------------------------------------

INTENT = re.compile(
    r"for (?P<people>\d+) people (?P<day>today|tomorrow|on \w+) "
    r"(?P<start>\d{1,2})-(?P<end>\d{1,2}) ?pm(?:, (?P<extra>.+))?"
)
DAYS = ("today", "tomorrow", "on monday", "on friday")
EXTRAS = ("with a projector", "near the lifts", "quiet please", "", "video call")


class WorldModel(nn.Module):
    """Action-conditioned latent dynamics: per step, the encoder embeds each candidate's
    action and the transition advances the latent state; a head scores the final state."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Linear(FEATURES, WIDTH)
        self.transition = nn.Linear(WIDTH, WIDTH)
        self.head = nn.Linear(WIDTH, 1)

    def forward(self, actions: torch.Tensor) -> torch.Tensor:
        z = torch.zeros(actions.shape[1], WIDTH)
        for step in range(actions.shape[0]):
            z = torch.tanh(self.transition(z) + self.encoder(actions[step]))
        return torch.sigmoid(self.head(z)).squeeze(1)


def make_texts(n: int) -> list[str]:
    texts = []
    for i in range(n):
        extra = EXTRAS[i % len(EXTRAS)]
        start = 1 + i % 5
        texts.append(
            f"book a room for {2 + i % 11} people {DAYS[i % len(DAYS)]} {start}-{start + 2}pm"
            + (f", {extra}" if extra else "")
            + f" (ref {i})"
        )
    return texts


def parse(text: str) -> dict[str, Any]:
    """The language-model stage's stand-in: text to an intent."""
    match = INTENT.search(text)
    if match is None:
        return {"people": 1, "day": "today", "start": 9, "end": 10, "extra": None}
    return {
        "people": int(match["people"]),
        "day": match["day"],
        "start": int(match["start"]) + 12,
        "end": int(match["end"]) + 12,
        "extra": match["extra"],
    }


class Stack:
    """The part of the request that is the same in every variant."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(1)
        self.actions = torch.randn(STEPS, CANDIDATES, FEATURES, generator=generator)
        self.names = [f"room-{i % 8 + 1}@+{i // 8}h" for i in range(CANDIDATES)]

    def rollout(self, model: nn.Module, intent: dict[str, Any]) -> list[float]:
        shift = torch.tensor(
            [intent["people"] / 10, intent["start"] / 24, (intent["end"] - intent["start"]) / 4,
             1.0 if intent["extra"] else 0.0, 0.0, 0.0, 0.0, 0.0]
        )  # fmt: skip
        with torch.no_grad():
            return list(model(self.actions + shift).tolist())

    def decide(
        self, scores: list[float], intent: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], str, list[str], float]:
        candidates = [
            {"action": name, "score": score, "predicted": {"conflict": 1.0 - score}}
            for name, score in zip(self.names, scores, strict=True)
        ]
        best = max(candidates, key=lambda c: c["score"])
        constraints = [f"capacity>={intent['people']}", f"start>={intent['start']}:00"]
        return candidates, best["action"], constraints, best["score"]


def step_summary(output: torch.Tensor, projection: torch.Tensor) -> tuple[list[float], list[float]]:
    """What a hook written without Warden computes per step: [mean, std, min, max, l2] and
    the state projected to DIM values, each crossing to Python with a .tolist()."""
    tensor = output.detach().float()
    flat = tensor.reshape(-1)
    summary = torch.stack(
        [flat.mean(), flat.std(correction=0), flat.min(), flat.max(), flat.norm()]
    ).tolist()
    features = tensor.reshape(-1, tensor.shape[-1]).mean(dim=0)
    return summary, (features @ projection).tolist()


def projections() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    return {layer: torch.randn(WIDTH, DIM, generator=generator) / DIM**0.5 for layer in LAYERS}


def fingerprint(value: Any) -> str:
    body = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(SECRET, body.encode(), hashlib.sha256).hexdigest()


def root_attributes(payload: dict[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        wire.REQUEST_FINGERPRINT: fingerprint(payload),
        wire.REQUEST_FINGERPRINT_KEY_ID: KEY_ID,
    }
    for role, name, version in MODELS:
        attrs[wire.model_name(role)] = name
        attrs[wire.model_version(role)] = version
    return attrs


LLM_SPAN = wire.llm_span("chat", "intent-parser")
LLM_ATTRIBUTES = {
    wire.GEN_AI_OPERATION_NAME: "chat",
    wire.GEN_AI_SYSTEM: "offline",
    wire.GEN_AI_REQUEST_MODEL: "intent-parser",
}


def llm_response(text: str) -> dict[str, Any]:
    return {
        wire.GEN_AI_RESPONSE_MODEL: "intent-parser-1",
        wire.GEN_AI_USAGE_INPUT_TOKENS: len(text.split()),
        wire.GEN_AI_USAGE_OUTPUT_TOKENS: 5,
    }


# --------------------------------------------------------------------------------------------
# The variants
# --------------------------------------------------------------------------------------------


class Variant(abc.ABC):
    key = ""
    label = ""
    spans_per_request = 0

    @abc.abstractmethod
    def handle(self, text: str) -> str:
        """Answer one request of the reference shape; the chosen action."""

    def drain(self) -> float | None:
        """Wait for what the background work still has to deliver; seconds, or None when
        there is nothing to deliver."""
        return None

    def close(self) -> None:
        return None


class Bare(Variant):
    key, label = "bare", "no instrumentation"

    def __init__(self, stack: Stack, model: nn.Module) -> None:
        self.stack, self.model = stack, model

    def handle(self, text: str) -> str:
        intent = parse(text)
        scores = self.stack.rollout(self.model, intent)
        _, chosen, _, _ = self.stack.decide(scores, intent)
        return chosen


class CountingExporter(SpanExporter):
    """The no-op exporter: drops the spans, counts them."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Any) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class OTel(Variant):
    key, label = "otel", "OpenTelemetry SDK (no-op exporter)"
    spans_per_request = SPANS_PER_REQUEST

    def __init__(self, stack: Stack, model: nn.Module) -> None:
        self.stack, self.model = stack, model
        self.exporter = CountingExporter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": "bench-otel"}))
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("bench.sdk_overhead", "0.1.0")
        self.projections = projections()
        self.steps: dict[str, int] = {}
        self.handles = [
            model.get_submodule(layer).register_forward_hook(self._hook(layer))
            for layer in LAYERS
        ]

    def _hook(self, layer: str) -> Callable[..., None]:
        projection = self.projections[layer]
        tracer = self.tracer

        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            step = self.steps.get(layer, 0)
            self.steps[layer] = step + 1
            summary, projected = step_summary(output, projection)
            span = tracer.start_span(
                wire.STATE_EVENT,
                attributes={
                    wire.STATE_STEP: step,
                    wire.STATE_LAYER: layer,
                    wire.STATE_SUMMARY: summary,
                    wire.STATE_PROJECTION: projected,
                },
            )
            span.end()

        return hook

    def handle(self, text: str) -> str:
        tracer = self.tracer
        with tracer.start_as_current_span(
            wire.REQUEST_SPAN, kind=SpanKind.SERVER, attributes=root_attributes({"text": text})
        ) as root:
            with tracer.start_as_current_span(
                LLM_SPAN, kind=SpanKind.CLIENT, attributes=LLM_ATTRIBUTES
            ) as llm:
                intent = parse(text)
                llm.set_attributes(llm_response(text))
            self.steps.clear()
            with tracer.start_as_current_span(wire.ROLLOUT_SPAN):
                scores = self.stack.rollout(self.model, intent)
            candidates, chosen, constraints, confidence = self.stack.decide(scores, intent)
            with tracer.start_as_current_span(
                wire.DECISION_SPAN,
                attributes={
                    wire.PLANNER_CANDIDATES: json.dumps(candidates),
                    wire.PLANNER_CHOSEN: chosen,
                    wire.PLANNER_CONSTRAINTS: json.dumps(constraints),
                    wire.PLANNER_CONFIDENCE: confidence,
                },
            ):
                pass
            root.set_attribute(wire.REQUEST_OUTCOME, "booked")
        return chosen

    def drain(self) -> float | None:
        self.provider.force_flush()
        return None

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.provider.shutdown()


def warden_request(
    stack: Stack, model: nn.Module, text: str, shadow: Callable[[], None] | None = None
) -> tuple[str, str | None]:
    """The reference request recorded by Warden's SDK (with a shadow run scheduled, when
    given): the chosen action and the request's id."""
    with collectors.request({"text": text}) as req:
        with collectors.llm_call(system="offline", request_model="intent-parser") as call:
            intent = parse(text)
            call.record(
                response_model="intent-parser-1", input_tokens=len(text.split()), output_tokens=5
            )
        scores = stack.rollout(model, intent)
        candidates, chosen, constraints, confidence = stack.decide(scores, intent)
        collectors.decision(candidates, chosen, constraints, confidence=confidence)
        if shadow is not None:
            collectors.shadow(SHADOW_ARM, shadow)
        req.set_outcome("booked")
    return chosen, req.trace_id


class Warden(Variant):
    key, label = "warden", "Warden SDK (collectors)"
    spans_per_request = WARDEN_SPANS_PER_REQUEST

    def __init__(self, stack: Stack, model: nn.Module, url: str, key: str, spool: Path) -> None:
        self.stack, self.model = stack, model
        # A provider of its own: Warden never becomes the global provider here.
        self.provider = TracerProvider()
        self.client = collectors.init(
            endpoint=url,
            api_key=key,
            fingerprint_secret=SECRET,
            fingerprint_key_id=KEY_ID,
            service_name="bench-warden",
            spool_dir=spool,
            tracer_provider=self.provider,
        )
        for role, name, version in MODELS:
            collectors.model(role, name, version)
        self.watch = collectors.watch(model, layers=list(LAYERS), dim=DIM)
        self.last_trace_id: str | None = None
        self.delivered_ok = True

    def handle(self, text: str) -> str:
        chosen, self.last_trace_id = warden_request(self.stack, self.model, text)
        return chosen

    def drain(self) -> float | None:
        t0 = time.perf_counter()
        ok = collectors.flush(timeout=60, include_spool=True)
        seconds = time.perf_counter() - t0
        self.delivered_ok = self.delivered_ok and ok
        return seconds

    def close(self) -> None:
        self.watch.remove()
        collectors.shutdown()


SHADOW_ARM = ShadowArm("bench-shadow", "candidate", "models:/booking-world-model/4")
SHADOW_SPANS = 3  # a shadow run: root, rollout (16 state events), decision


class WardenShadow(Variant):
    """Warden's variant with a shadow arm sampled for every request: after each request's
    answer, the SDK's shadow worker runs a candidate world model (other weights, same shape)
    and the planner on the same input, recording into a `warden.shadow` trace. It shares the
    Warden variant's client (one per process) and its last-request bookkeeping."""

    key, label = "warden_shadow", "Warden SDK + shadow arm at 100%"
    spans_per_request = WARDEN_SPANS_PER_REQUEST

    def __init__(self, stack: Stack, model: nn.Module, candidate: nn.Module, base: Warden):
        self.stack, self.model, self.candidate, self.base = stack, model, candidate, base
        self.watches = [collectors.watch(m, layers=list(LAYERS), dim=DIM)
                        for m in (model, candidate)]

    def shadow_run(self, text: str) -> None:
        collectors.model("world_model", "booking-world-model", "4")
        intent = parse(text)
        scores = self.stack.rollout(self.candidate, intent)
        candidates, chosen, constraints, confidence = self.stack.decide(scores, intent)
        collectors.decision(candidates, chosen, constraints, confidence=confidence)

    def handle(self, text: str) -> str:
        chosen, self.base.last_trace_id = warden_request(
            self.stack, self.model, text, lambda: self.shadow_run(text)
        )
        return chosen

    def drain(self) -> float | None:
        return self.base.drain()  # collectors.flush waits for the queued shadow runs first

    def close(self) -> None:
        for watch in self.watches:
            watch.remove()


class LogTally(logging.Handler):
    """Counts the warnings the exporters log, by the variant running when they were logged."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.current = "setup"
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[(self.current, record.name, record.getMessage()[:100])] += 1

    def first_filter(self, logger: logging.Logger) -> None:
        """Count what reaches `logger` ahead of its own filters: OpenTelemetry's
        DuplicateFilter logs "Queue full, dropping span." once per 20 s, not per span."""
        tally = self

        class Counting(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                if record.levelno >= logging.WARNING:
                    tally.emit(record)
                return True

        logger.filters.insert(0, Counting())

    def matching(self, variant: str, needle: str) -> int:
        return sum(n for (v, _, msg), n in self.counts.items() if v == variant and needle in msg)


class MLflow(Variant):
    key, label = "mlflow", "MLflow tracing (SQLite store)"
    spans_per_request = SPANS_PER_REQUEST

    def __init__(self, stack: Stack, model: nn.Module, directory: Path, tally: LogTally) -> None:
        import mlflow

        self.mlflow = mlflow
        self.stack, self.model = stack, model
        self.db = directory / "mlflow.db"
        mlflow.set_tracking_uri(f"sqlite:///{self.db}")
        # An artifact location of its own: nothing is written into the working directory.
        self.experiment_id = mlflow.create_experiment(
            "sdk-overhead", artifact_location=(directory / "artifacts").as_uri()
        )
        mlflow.set_experiment(experiment_id=self.experiment_id)
        logging.getLogger("mlflow").addHandler(tally)
        self.projections = projections()
        self.steps: dict[str, int] = {}
        self.started = 0
        self.handles = [
            model.get_submodule(layer).register_forward_hook(self._hook(layer))
            for layer in LAYERS
        ]

    def _hook(self, layer: str) -> Callable[..., None]:
        projection = self.projections[layer]
        start_span = self.mlflow.start_span

        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            step = self.steps.get(layer, 0)
            self.steps[layer] = step + 1
            summary, projected = step_summary(output, projection)
            with start_span(
                wire.STATE_EVENT,
                attributes={
                    wire.STATE_STEP: step,
                    wire.STATE_LAYER: layer,
                    wire.STATE_SUMMARY: summary,
                    wire.STATE_PROJECTION: projected,
                },
            ):
                pass

        return hook

    def handle(self, text: str) -> str:
        start_span = self.mlflow.start_span
        self.started += 1
        with start_span(
            wire.REQUEST_SPAN, span_type="CHAIN", attributes=root_attributes({"text": text})
        ) as root:
            with start_span(
                LLM_SPAN, span_type="LLM", attributes=LLM_ATTRIBUTES
            ) as llm:
                intent = parse(text)
                llm.set_attributes(llm_response(text))
            self.steps.clear()
            with start_span(wire.ROLLOUT_SPAN):
                scores = self.stack.rollout(self.model, intent)
            candidates, chosen, constraints, confidence = self.stack.decide(scores, intent)
            with start_span(
                wire.DECISION_SPAN,
                attributes={
                    wire.PLANNER_CANDIDATES: json.dumps(candidates),
                    wire.PLANNER_CHOSEN: chosen,
                    wire.PLANNER_CONSTRAINTS: json.dumps(constraints),
                    wire.PLANNER_CONFIDENCE: confidence,
                },
            ):
                pass
            root.set_attribute(wire.REQUEST_OUTCOME, "booked")
        return chosen

    def drain(self) -> float | None:
        t0 = time.perf_counter()
        self.mlflow.flush_trace_async_logging()
        return time.perf_counter() - t0

    def stored(self) -> tuple[int, int, int]:
        """(traces found by search_traces, trace_info rows, span rows) of the experiment."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        found, token = 0, None
        while True:
            page = client.search_traces(
                locations=[self.experiment_id], max_results=1000, include_spans=False,
                page_token=token,
            )  # fmt: skip
            found += len(page)
            token = page.token
            if not token:
                break
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            infos = conn.execute(
                "SELECT count(*) FROM trace_info WHERE experiment_id = ?", (self.experiment_id,)
            ).fetchone()[0]
            spans = conn.execute(
                "SELECT count(*) FROM spans WHERE experiment_id = ?", (self.experiment_id,)
            ).fetchone()[0]
        finally:
            conn.close()
        return found, int(infos), int(spans)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.mlflow.flush_trace_async_logging(terminate=True)


# --------------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


@dataclass
class Figures:
    latencies_ns: list[int] = field(default_factory=list)
    loop_seconds: list[float] = field(default_factory=list)
    drain_seconds: list[float] = field(default_factory=list)
    requests: int = 0  # warm-up included

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile, in microseconds."""
        data = sorted(self.latencies_ns)
        if not data:
            return float("nan")
        rank = max(1, min(len(data), round(q / 100 * len(data) + 0.5)))
        return data[rank - 1] / 1000


def run_block(variant: Variant, texts: list[str], gap: float = 0.0) -> tuple[list[int], float]:
    """Each request timed alone; with a `gap` (s), the process idles that long after each."""
    handle = variant.handle
    clock = time.perf_counter_ns
    latencies = []
    t0 = time.perf_counter()
    for text in texts:
        start = clock()
        handle(text)
        latencies.append(clock() - start)
        if gap:
            time.sleep(gap)
    return latencies, time.perf_counter() - t0


def split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=(
            "Per-request cost of recording a hybrid-AI request (root + LLM stage + world-model "
            "rollout of 8 steps x 2 layers = 16 latent states + planner decision over 16 "
            "candidates, ~20 spans) with no instrumentation, the bare OpenTelemetry SDK "
            "(no-op exporter), Warden's SDK against a live `warden serve`, and MLflow tracing "
            "into a SQLite store, interleaved in rounds in one process. Also measures how long "
            "Warden and MLflow take to deliver what was recorded, and checks what arrived. "
            "Prints figures; asserts nothing about time."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=2000,
                        help="measured requests per variant (split over the rounds)")
    parser.add_argument("--warmup", type=int, default=200,
                        help="requests per variant run first and not measured")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds; each runs every variant once, the order rotating")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads (0: torch's default, one per core). The "
                             "model is far too small to gain from more than one, and on a "
                             "small machine torch's spinning OpenMP workers next to any "
                             "Python background thread (every exporter has one) stall "
                             "requests by ~100 ms")
    parser.add_argument("--shadow-requests", type=int, default=1000,
                        help="measured requests per side of the shadow comparison (0: skip it)")
    parser.add_argument("--shadow-gap-us", type=float, default=-1,
                        help="idle time after each request of the shadow comparison, in µs; "
                             "-1: twice Warden's p50 from the main rounds, so the process is "
                             "idle about 2/3 of the time as a service with headroom is")
    parser.add_argument("--assignment-units", type=int, default=100_000,
                        help="units timed one call each for the cost of assignment")
    parser.add_argument("--json", action="store_true",
                        help="also print the figures as one JSON line at the end")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary dir (server data and log, MLflow store, spool)")
    args = parser.parse_args()
    if args.requests < 1 or args.rounds < 1 or args.warmup < 0 or args.rounds > args.requests:
        parser.error("--requests and --rounds must be >= 1 (rounds <= requests), --warmup >= 0")
    if not WARDEN.exists():
        parser.error(f"no `warden` entry point next to {sys.executable}")
    if args.torch_threads < 0:
        parser.error("--torch-threads must be >= 0")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    tally = LogTally()
    # The batch processor's "Queue full, dropping span." (MLflow exports through one too).
    tally.first_filter(logging.getLogger("opentelemetry.sdk._shared_internal"))

    tmp = Path(tempfile.mkdtemp(prefix="warden-sdk-bench-"))
    server_dir, mlflow_dir = tmp / "server", tmp / "mlflow"
    server_dir.mkdir()
    mlflow_dir.mkdir()
    texts = make_texts(args.warmup + args.requests)
    warm_texts, measured_texts = texts[: args.warmup], texts[args.warmup :]
    stack = Stack()
    model = WorldModel().eval()
    failures: list[str] = []
    server: Server | None = None
    variants: list[Variant] = []
    figures: dict[str, Figures] = {}
    shadowed: WardenShadow | None = None
    paced: dict[str, Figures] = {}
    gap = 0.0
    try:
        t0 = time.perf_counter()
        server = start_server(server_dir, want_key=True)
        say(f"warden serve ready on port {server.port} in {time.perf_counter() - t0:.1f}s")
        t0 = time.perf_counter()
        variants = [
            Bare(stack, copy.deepcopy(model)),
            OTel(stack, copy.deepcopy(model)),
            Warden(stack, copy.deepcopy(model), server.url, server.key, tmp / "spool"),
            MLflow(stack, copy.deepcopy(model), mlflow_dir, tally),
        ]
        warden = next(v for v in variants if isinstance(v, Warden))
        candidate = copy.deepcopy(model)
        with torch.no_grad():
            for parameter in candidate.parameters():
                parameter.mul_(1.1)  # the challenger: other weights, same shape and cost
        shadowed = WardenShadow(stack, copy.deepcopy(model), candidate, warden)
        say(f"variants set up in {time.perf_counter() - t0:.1f}s")
        figures = {v.key: Figures() for v in variants}

        # The same answers everywhere: the instrumentation must not change the request.
        answers = {v.key: [v.handle(t) for t in texts[:5]] for v in [*variants, shadowed]}
        if len({tuple(a) for a in answers.values()}) != 1:
            failures.append(f"variants answer differently: {answers}")
        for v in variants:
            figures[v.key].requests += 5

        for v in variants:
            tally.current = v.key
            say(f"warm-up: {v.key} x {len(warm_texts)}")
            run_block(v, warm_texts)
            figures[v.key].requests += len(warm_texts)
            v.drain()
        gc.collect()

        sizes = split(len(measured_texts), args.rounds)
        offset = 0
        for r, size in enumerate(sizes):
            chunk = measured_texts[offset : offset + size]
            offset += size
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            say(f"round {r + 1}/{args.rounds}: {size} requests each, order "
                f"{' '.join(v.key for v in order)}")
            for v in order:
                tally.current = v.key
                latencies, seconds = run_block(v, chunk)
                fig = figures[v.key]
                fig.latencies_ns += latencies
                fig.loop_seconds.append(seconds)
                fig.requests += len(chunk)
                drained = v.drain()
                if drained is not None:
                    fig.drain_seconds.append(drained)
                gc.collect()

        # ---- the live request with a shadow arm at 100%, against none -----------------------
        # Paced: a shadow run uses the idle time after a request, and a closed loop has none.
        shadow_texts = texts[: args.shadow_requests]
        if shadow_texts:
            gap = (args.shadow_gap_us if args.shadow_gap_us >= 0
                   else 2 * figures["warden"].percentile(50)) / 1e6
            pair: list[Variant] = [warden, shadowed]
            paced = {v.key: Figures() for v in pair}
            tally.current = "warden"
            for v in pair:
                run_block(v, texts[: min(args.warmup, 50)], gap)
                paced[v.key].requests += min(args.warmup, 50)
                v.drain()
            shadow_sizes = split(len(shadow_texts), args.rounds)
            offset = 0
            for r, size in enumerate(shadow_sizes):
                chunk = shadow_texts[offset : offset + size]
                offset += size
                say(f"shadow comparison round {r + 1}/{args.rounds}: {size} requests each, "
                    f"{1e6 * gap:.0f} µs idle after each")
                for v in (pair if r % 2 == 0 else pair[::-1]):
                    latencies, seconds = run_block(v, chunk, gap)
                    paced[v.key].latencies_ns += latencies
                    paced[v.key].loop_seconds.append(seconds)
                    paced[v.key].requests += len(chunk)
                    drained = v.drain()
                    if drained is not None:
                        paced[v.key].drain_seconds.append(drained)
                    gc.collect()
        tally.current = "checks"

        # ---- what arrived -------------------------------------------------------------------
        otel = next(v for v in variants if isinstance(v, OTel))
        mlflow_v = next(v for v in variants if isinstance(v, MLflow))
        # Every request Warden's client recorded, with and without a shadow arm.
        total = figures["warden"].requests + 5 + sum(f.requests for f in paced.values())
        stats = collectors.stats()
        shadow_stats = stats.get("shadows", {})
        shadow_runs = shadow_stats.get("run", 0)
        if not warden.delivered_ok:
            failures.append("collectors.flush(timeout=60, include_spool=True) timed out")
        status, page = get_json(server.port, server.key, "/v1/requests?limit=1")
        newest = page["items"][0]["request_id"] if status == 200 and page.get("items") else None
        if newest != warden.last_trace_id:
            failures.append(f"GET /v1/requests?limit=1 -> {status}: newest {newest!r}, "
                            f"last recorded {warden.last_trace_id!r}")
        db = server_dir / "warden.db"
        stored = {t: count_rows(db, t) for t in
                  ("requests", "spans", "world_model_states", "planner_decisions", "shadow_runs")}
        expected = {"requests": total,
                    "spans": total * WARDEN_SPANS_PER_REQUEST + shadow_runs * SHADOW_SPANS,
                    "world_model_states": (total + shadow_runs) * STATES,
                    "planner_decisions": total + shadow_runs, "shadow_runs": shadow_runs}
        if shadow_stats.get("failed") or shadow_runs != shadow_stats.get("queued", 0):
            failures.append(f"shadow runs failed or left unrun after the flush: {shadow_stats}")
        for table, want in expected.items():
            if stored[table] != want:
                failures.append(f"service table {table} holds {stored[table]} rows, "
                                f"expected {want}")
        delivered_spans = stats.get("exported", 0) + stats.get("replayed", 0)
        warden_dropped = (stats.get("dropped", 0) + stats.get("rejected", 0)
                          + stats.get("spool_pending_spans", 0))
        if delivered_spans != expected["spans"] or warden_dropped:
            failures.append(f"collectors.stats() does not account for every span: {stats}")

        otel.provider.force_flush()
        otel_expected = figures["otel"].requests * SPANS_PER_REQUEST
        otel_exported = otel.exporter.spans
        otel_queue_drops = tally.matching("otel", "Queue full")

        say("searching the MLflow store ...")
        ml_found, ml_infos, ml_spans = mlflow_v.stored()
        ml_started = mlflow_v.started
        ml_expected_spans = ml_started * SPANS_PER_REQUEST
        ml_bsp_drops = tally.matching("mlflow", "Queue full")
        ml_queue_warnings = tally.matching("mlflow", "queue is full")
        ml_warnings = {msg: n for (v, _, msg), n in tally.counts.items() if v == "mlflow"}
    except BaseException:
        if server is not None:
            say(f"server log (last lines):\n{server.tail()}")
        raise
    finally:
        for v in [*([shadowed] if shadowed else []), *variants]:
            with contextlib.suppress(Exception):
                v.close()
        if server is not None:
            stop_server(server)
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    # ---- the figures ----------------------------------------------------------------------
    p = {k: {q: f.percentile(q) for q in (50, 95, 99)} for k, f in figures.items()}
    overhead = {k: p[k][50] - p["bare"][50] for k in figures}
    base = overhead["otel"]
    ratio = {k: overhead[k] / base if base > 0 else float("nan") for k in figures}
    p50_ratio = {k: p[k][50] / p["otel"][50] for k in figures}
    mlflow_factor = (overhead["mlflow"] / overhead["warden"] if overhead["warden"] > 0
                     else float("inf"))
    spans = {"bare": 0, "otel": SPANS_PER_REQUEST, "warden": WARDEN_SPANS_PER_REQUEST,
             "mlflow": SPANS_PER_REQUEST}
    labels = {v.key: v.label for v in variants}

    measured = len(measured_texts)
    print()
    print("Warden SDK overhead benchmark: per-request cost of recording a hybrid-stack request")
    print(f"request: root + LLM stage + world-model rollout {STEPS} steps x {len(LAYERS)} layers "
          f"({STATES} states, width {WIDTH}, batch {CANDIDATES}) + planner decision over "
          f"{CANDIDATES} candidates")
    print(f"{measured} measured requests per variant in {args.rounds} interleaved rounds "
          f"({', '.join(map(str, sizes))}), after {args.warmup} warm-up")
    header = (f"{'variant':<36}{'p50 µs':>9}{'p95 µs':>9}{'p99 µs':>9}"
              f"{'overhead':>10}{'ovh/OTel':>10}{'p50/OTel':>10}{'spans':>7}")
    print("-" * len(header))
    print(header)
    print("-" * len(header))
    for key in figures:
        ovh = "-" if key == "bare" else f"{overhead[key]:.0f}"
        rat = "-" if key == "bare" else f"{ratio[key]:.2f}"
        print(f"{labels[key]:<36}{p[key][50]:>9.0f}{p[key][95]:>9.0f}{p[key][99]:>9.0f}"
              f"{ovh:>10}{rat:>10}{p50_ratio[key]:>10.2f}{spans[key]:>7}")
    print("-" * len(header))
    print("overhead = variant p50 - no-instrumentation p50 (µs); ovh/OTel = overhead / "
          "OpenTelemetry's overhead; p50/OTel = plain p50 ratio; spans = spans per request")
    print(f"MLflow overhead / Warden overhead: {mlflow_factor:.1f}x")

    shadow_added = float("nan")
    if paced:
        ps = {k: {q: f.percentile(q) for q in (50, 95, 99)} for k, f in paced.items()}
        shadow_added = ps["warden_shadow"][50] / ps["warden"][50] - 1
        n = len(paced["warden"].latencies_ns)
        print()
        print(f"live request with a shadow arm at 100% vs none, the same reference request: "
              f"{n} measured requests each, {1e6 * gap:.0f} µs idle after each request")
        print(f"{'variant':<36}{'p50 µs':>9}{'p95 µs':>9}{'p99 µs':>9}{'p50 added':>11}")
        for v in (warden, shadowed):
            if v is None:
                continue
            added = "-" if v is warden else f"{100 * shadow_added:+.1f}%"
            print(f"{v.label:<36}{ps[v.key][50]:>9.0f}{ps[v.key][95]:>9.0f}"
                  f"{ps[v.key][99]:>9.0f}{added:>11}")
        print(f"  shadow runs (collectors.stats()['shadows']): {shadow_stats}; stored "
              f"shadow_runs rows {stored['shadow_runs']:,}")

    say("timing the assignment at request open ...")
    assignment = assignment_cost.measure(args.assignment_units)
    print()
    print("\n".join(assignment_cost.report(assignment)))
    assignment_p99 = assignment["one_experiment_with_shadow_us"][99]

    def delivery(f: Figures) -> str:
        loop, drain = sum(f.loop_seconds), sum(f.drain_seconds)
        return (f"drain after each round's loop: mean {1000 * drain / len(f.drain_seconds):.0f} ms,"
                f" max {1000 * max(f.drain_seconds):.0f} ms, after the last request "
                f"{1000 * f.drain_seconds[-1]:.0f} ms (= {1e6 * drain / measured:.0f} µs per "
                f"request); recorded-and-delivered "
                f"throughput {measured / (loop + drain):,.0f} req/s (loop {loop:.2f} s + drain "
                f"{drain:.2f} s for {measured} requests)")

    print()
    print("time until durably delivered")
    print(f"  OpenTelemetry: n/a (no-op exporter); exporter received {otel_exported:,} of "
          f"{otel_expected:,} spans, batch-processor drops {otel_queue_drops}")
    print(f"  Warden: {delivery(figures['warden'])}")
    print(f"    service: GET /v1/requests?limit=1 -> {status}, newest = last recorded: "
          f"{newest == warden.last_trace_id}; rows: " +
          ", ".join(f"{t} {stored[t]:,}/{expected[t]:,}" for t in expected))
    print(f"    collectors.stats(): {stats}")
    print(f"  MLflow: {delivery(figures['mlflow'])}")
    print(f"    store: search_traces finds {ml_found:,} of {ml_started:,} traces started "
          f"(trace_info rows {ml_infos:,}), spans {ml_spans:,} of {ml_expected_spans:,}; "
          f"dropped: {ml_started - ml_found:,} traces, {ml_expected_spans - ml_spans:,} spans")
    print(f"    logged: {ml_queue_warnings} 'Trace export queue is full' warning(s) (MLflow logs "
          f"it at most once per 30 s), {ml_bsp_drops} batch-processor 'Queue full' drop(s)")
    for msg, n in sorted(ml_warnings.items(), key=lambda kv: -kv[1])[:5]:
        print(f"      {n:>6} x {msg}")

    def ok(flag: bool) -> str:
        return "met" if flag else "NOT met"

    nothing_dropped = not failures and warden_dropped == 0
    print()
    print("targets: Warden's SDK at or below the bare OpenTelemetry figure (ratio <= 1.0), at "
          f"least {TARGET_MLFLOW_FACTOR:.0f}x cheaper than MLflow tracing, nothing dropped")
    print(f"  overhead / OpenTelemetry overhead = {ratio['warden']:.2f} <= "
          f"{TARGET_OTEL_RATIO:.1f}: {ok(ratio['warden'] <= TARGET_OTEL_RATIO)} "
          f"(plain p50 ratio {p50_ratio['warden']:.2f})")
    print(f"  MLflow overhead / Warden overhead = {mlflow_factor:.1f}x >= "
          f"{TARGET_MLFLOW_FACTOR:.0f}x: {ok(mlflow_factor >= TARGET_MLFLOW_FACTOR)}")
    print(f"  nothing dropped (every request at the service, stats account for every span): "
          f"{ok(nothing_dropped)}")
    if paced:
        print(f"  live p50 added by a shadow arm at 100% = {100 * shadow_added:+.1f}% <= "
              f"{100 * TARGET_SHADOW_ADDED:.0f}%: {ok(shadow_added <= TARGET_SHADOW_ADDED)}")
    print(f"  assignment p99 (one experiment with a shadow arm) = {assignment_p99:.2f} µs < "
          f"{assignment_cost.TARGET_P99_US:.0f} µs: "
          f"{ok(assignment_p99 < assignment_cost.TARGET_P99_US)}")
    machine = {
        "nproc": (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                  else os.cpu_count()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(terse=True),
    }
    print(f"machine: nproc={machine['nproc']}, python {machine['python']}, torch "
          f"{machine['torch']} ({machine['torch_threads']} threads), {machine['platform']}")
    if failures:
        print(f"\nDATA CHECKS FAILED ({len(failures)}):")
        for failure in failures[:20]:
            print(f"  {failure}")
    if args.json:
        print(json.dumps({
            "requests": measured,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "latency_us": {k: {f"p{q}": round(v, 1) for q, v in p[k].items()} for k in p},
            "overhead_p50_us": {k: round(v, 1) for k, v in overhead.items() if k != "bare"},
            "overhead_ratio_to_otel": {k: round(v, 3) for k, v in ratio.items() if k != "bare"},
            "p50_ratio_to_otel": {k: round(v, 3) for k, v in p50_ratio.items()},
            "mlflow_over_warden_overhead": round(mlflow_factor, 2),
            "spans_per_request": spans,
            "delivery": {
                k: {"loop_s": round(sum(figures[k].loop_seconds), 3),
                    "drain_s": [round(s, 3) for s in figures[k].drain_seconds]}
                for k in ("warden", "mlflow")
            },
            "warden": {"stats": stats, "stored": stored, "expected": expected,
                       "newest_is_last": newest == warden.last_trace_id},
            "shadow": {
                "gap_us": round(1e6 * gap, 1),
                "latency_us": {k: {f"p{q}": round(f.percentile(q), 1) for q in (50, 95, 99)}
                               for k, f in paced.items()},
                "p50_added": round(shadow_added, 4),
                "counters": shadow_stats,
            },
            "assignment_us": assignment,
            "otel": {"exported_spans": otel_exported, "expected_spans": otel_expected,
                     "queue_full_drops": otel_queue_drops},
            "mlflow": {"started": ml_started, "found": ml_found, "trace_info_rows": ml_infos,
                       "spans": ml_spans, "expected_spans": ml_expected_spans,
                       "queue_full_warnings": ml_queue_warnings,
                       "batch_processor_drops": ml_bsp_drops},
            "targets": {
                "otel_ratio_le_1": ratio["warden"] <= TARGET_OTEL_RATIO,
                "mlflow_factor_ge_10": mlflow_factor >= TARGET_MLFLOW_FACTOR,
                "nothing_dropped": nothing_dropped,
                "shadow_p50_added_le_5pct": shadow_added <= TARGET_SHADOW_ADDED,
                "assignment_p99_lt_20us": assignment_p99 < assignment_cost.TARGET_P99_US,
            },
            "failures": len(failures),
            "machine": machine,
        }))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
