"""The SDK against a live service: what a request records, and how it reaches the service."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import hmac
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import collectors
from collectors import conventions as wire
from tests.conftest import LiveService, free_port

SECRET = "fingerprint-secret"


class TinyWorldModel(nn.Module):
    """Encoder, then a transition applied `steps` times: one hook call per step."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Linear(4, width)
        self.transition = nn.Linear(width, width)
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor, steps: int = 8) -> torch.Tensor:
        z = torch.tanh(self.encoder(x))
        for _ in range(steps):
            z = torch.tanh(self.transition(z))
        return torch.sigmoid(self.head(z))


def init(live: LiveService | None, tmp_path: Path, **kwargs: Any) -> collectors.Client:
    endpoint = live.url if live else f"http://127.0.0.1:{free_port()}"
    key = kwargs.pop("api_key", None) or (live.key("shop", "ingest", "read") if live else None)
    return collectors.init(
        endpoint=endpoint,
        api_key=key,
        fingerprint_secret=SECRET,
        spool_dir=tmp_path / "spool",
        service_name="booking-test",
        **kwargs,
    )


def handle(model: nn.Module, text: str, subject: str | None = None, **request_kwargs: Any) -> str:
    """A miniature hybrid request: LLM stage, world-model rollout, planner decision."""
    with collectors.request({"text": text}, subject=subject, **request_kwargs) as req:
        with collectors.llm_call(system="offline", request_model="intent-parser") as call:
            call.record(response_model="intent-parser-1", input_tokens=len(text), output_tokens=5)
        with torch.no_grad():
            scores = model(torch.ones(3, 4)).squeeze(1).tolist()
        candidates = [
            {"action": f"room-{i}", "score": s, "predicted": {"conflict_probability": 1 - s}}
            for i, s in enumerate(scores)
        ]
        chosen = max(candidates, key=lambda c: c["score"])["action"]
        collectors.decision(candidates, chosen, constraints=["capacity>=6"], confidence=0.8)
        req.set_outcome("booked")
        assert req.trace_id is not None
        return req.trace_id


def test_a_request_records_fingerprint_models_states_and_the_whole_decision(
    live: LiveService, tmp_path: Path
) -> None:
    init(live, tmp_path)
    collectors.model("llm", "intent-parser", "1")
    collectors.model("world_model", "tiny-world-model", "3")
    collectors.model("planner", "mpc-planner", "2")
    model = TinyWorldModel()
    with collectors.watch(model, layers=["encoder", "transition"], dim=16):
        trace_id = handle(model, "a room for 6 tomorrow", subject="u-1")
    assert collectors.flush(10)
    stats = collectors.stats()
    assert stats["exported"] == stats["queued"] == 4, stats
    assert stats["dropped"] == 0

    with live.client(live.key("shop", "read")) as client:
        detail = client.get(f"/v1/requests/{trace_id}").raise_for_status().json()
    expected = hmac.new(
        SECRET.encode(),
        json.dumps(
            {"text": "a room for 6 tomorrow"}, sort_keys=True, separators=(",", ":")
        ).encode(),
        hashlib.sha256,
    ).hexdigest()
    assert detail["fingerprint"] == expected
    assert detail["fingerprint_key_id"] == "k1"
    assert detail["subject"] == "u-1"
    assert detail["outcome"] == "booked"
    assert detail["models"] == {
        "llm": {"name": "intent-parser", "version": "1"},
        "world_model": {"name": "tiny-world-model", "version": "3"},
        "planner": {"name": "mpc-planner", "version": "2"},
    }
    states = detail["states"]
    assert sorted((s["layer"], s["step"]) for s in states) == sorted(
        [("encoder", 0)] + [("transition", step) for step in range(8)]
    )
    assert all(len(s["projection"]) == 16 for s in states)
    # The summaries are those of the real activations.
    with torch.no_grad():
        encoded = model.encoder(torch.ones(3, 4))  # the hooked layer's own output
    encoder_state = next(s for s in states if s["layer"] == "encoder")
    assert encoder_state["mean"] == pytest.approx(encoded.mean().item(), rel=1e-5)
    assert encoder_state["max"] == pytest.approx(encoded.max().item(), rel=1e-5)
    assert encoder_state["l2_norm"] == pytest.approx(encoded.norm().item(), rel=1e-5)
    (decision,) = detail["decisions"]
    assert len(decision["candidates"]) == 3
    assert decision["chosen"] in {c["action"] for c in decision["candidates"]}
    assert decision["constraints"] == ["capacity>=6"]
    llm_span = wire.llm_span("chat", "intent-parser")
    llm = next(s for s in detail["spans"] if s["name"] == llm_span)
    assert llm["attributes"][wire.GEN_AI_USAGE_INPUT_TOKENS] == len("a room for 6 tomorrow")
    assert llm["attributes"][wire.GEN_AI_SYSTEM] == "offline"
    assert {s["name"] for s in detail["spans"]} == {
        wire.REQUEST_SPAN, llm_span, wire.ROLLOUT_SPAN, wire.DECISION_SPAN,
    }  # fmt: skip


def test_projection_is_fixed_for_a_seed_and_hooks_go_away(tmp_path: Path) -> None:
    model = TinyWorldModel()
    a = collectors.watch(model, layers=["transition"], dim=4, seed=7)
    b = collectors.watch(model, layers=["transition"], dim=4, seed=7)
    c = collectors.watch(model, layers=["transition"], dim=4, seed=8)
    assert torch.equal(a.projection("transition", 8, torch.device("cpu")),
                       b.projection("transition", 8, torch.device("cpu")))  # fmt: skip
    assert not torch.equal(a.projection("transition", 8, torch.device("cpu")),
                           c.projection("transition", 8, torch.device("cpu")))  # fmt: skip
    for handle_ in (a, b, c):
        handle_.remove()
    assert not model.transition._forward_hooks
    with pytest.raises(ValueError, match="no attribute"):
        collectors.watch(model, layers=["missing"])


def test_concurrent_requests_in_threads_and_tasks_never_mix(
    live: LiveService, tmp_path: Path
) -> None:
    init(live, tmp_path)
    model = TinyWorldModel()
    watch = collectors.watch(model, layers=["transition"])
    results: dict[str, int] = {}
    barrier = threading.Barrier(8)

    def one(n: int) -> None:
        with collectors.request({"n": n}) as req:
            barrier.wait()  # all eight requests are open at once
            steps = n + 1
            with torch.no_grad():
                model(torch.ones(1, 4), steps=steps)
            req.set_attribute("test.n", n)
            # A thread started inside the request with a copied context lands in it too.
            inner = threading.Thread(
                target=contextvars.copy_context().run, args=(collectors.stage, "inner")
            )
            inner.start()
            inner.join()
            assert req.trace_id is not None
            results[req.trace_id] = steps

    threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    async def task(n: int) -> None:
        with collectors.request({"task": n}) as req:
            await asyncio.sleep(0.01 * (8 - n))  # interleave the tasks
            with torch.no_grad():
                model(torch.ones(1, 4), steps=n + 1)
            await asyncio.sleep(0)
            assert req.trace_id is not None
            results[req.trace_id] = n + 1

    async def main() -> None:
        await asyncio.gather(*(task(n) for n in range(8)))

    asyncio.run(main())
    watch.remove()
    assert collectors.flush(10)
    with live.client(live.key("shop", "read")) as client:
        for trace_id, steps in results.items():
            detail = client.get(f"/v1/requests/{trace_id}").raise_for_status().json()
            assert [s["step"] for s in detail["states"]] == list(range(steps)), trace_id
    assert len(results) == 16


def test_with_the_service_down_requests_are_not_delayed_and_nothing_is_lost(
    live: LiveService, tmp_path: Path
) -> None:
    """Requests go on while the service is unreachable; the spool delivers them later."""
    key = live.key("shop", "ingest", "read")
    dead = f"http://127.0.0.1:{free_port()}"
    collectors.init(
        endpoint=dead, api_key=key, fingerprint_secret=SECRET, spool_dir=tmp_path / "spool"
    )
    model = TinyWorldModel()
    slowest = 0.0
    ids = []
    for n in range(50):
        started = time.perf_counter()
        ids.append(handle(model, f"request {n}"))
        slowest = max(slowest, time.perf_counter() - started)
    assert collectors.flush(10)
    stats = collectors.stats()
    assert stats["spooled"] == 50 * 3 and stats["exported"] == 0 and stats["dropped"] == 0
    # The bound the README states for a request while the service is away.
    assert slowest < 0.25
    collectors.shutdown()

    # A new process (here: a new client) with the same spool replays it to the live service.
    collectors.init(
        endpoint=live.url, api_key=key, fingerprint_secret=SECRET, spool_dir=tmp_path / "spool"
    )
    assert collectors.flush(30, include_spool=True)
    assert collectors.stats()["replayed"] == 150
    with live.client(key) as client:
        for trace_id in ids:
            assert client.get(f"/v1/requests/{trace_id}").status_code == 200


def test_refused_batches_are_kept_aside_not_retried_forever(
    live: LiveService, tmp_path: Path
) -> None:
    revoked = live.key("shop", "read")  # a valid key without the ingest scope: 403
    init(live, tmp_path, api_key=revoked)
    handle(TinyWorldModel(), "hello")
    assert collectors.flush(10)
    stats = collectors.stats()
    assert stats["rejected"] == 3
    assert stats["spool_pending_batches"] == 0
    assert collectors.flush(5, include_spool=True)


def test_fail_closed_refuses_requests_it_cannot_record(tmp_path: Path) -> None:
    init(None, tmp_path, fail_closed=True, spool_max_bytes=1)
    ran = []
    with pytest.raises(collectors.RecordNotDurable), collectors.request({"text": "x"}):
        ran.append(True)
    assert ran == []


def test_fail_closed_spools_before_the_request_returns(tmp_path: Path) -> None:
    init(None, tmp_path, fail_closed=True)
    handle(TinyWorldModel(), "x")
    # Durable at once: no flush needed.
    assert collectors.stats()["spool_pending_spans"] == 3


def test_requests_with_the_same_id_are_stored_once(live: LiveService, tmp_path: Path) -> None:
    init(live, tmp_path)
    model = TinyWorldModel()
    first = handle(model, "same", request_id="order-17")
    second = handle(model, "same", request_id="order-17")
    assert first == second
    assert collectors.flush(10)
    with live.client(live.key("shop", "read")) as client:
        page = client.get("/v1/requests").json()
    assert [item["request_id"] for item in page["items"]] == [first]


def test_instrumentation_errors_never_reach_the_caller(live: LiveService, tmp_path: Path) -> None:
    init(live, tmp_path)
    unserialisable = {"when": object()}
    with collectors.request(unserialisable) as req:
        collectors.decision([{"action": "a", "score": object()}], "a")
        req.set_outcome("booked")
    with collectors.request({"ok": True}):
        pass
    assert collectors.flush(10)
    assert collectors.stats()["exported"] >= 2


def test_foreign_opentelemetry_spans_join_the_request(live: LiveService, tmp_path: Path) -> None:
    client = init(live, tmp_path)
    tracer = client.provider.get_tracer("other-instrumentation")
    with (
        collectors.request({"text": "x"}) as req,
        tracer.start_as_current_span("http.client GET /calendar"),
    ):
        pass
    assert collectors.flush(10)
    with live.client(live.key("shop", "read")) as http:
        detail = http.get(f"/v1/requests/{req.trace_id}").raise_for_status().json()
    foreign = next(s for s in detail["spans"] if s["name"] == "http.client GET /calendar")
    root = next(s for s in detail["spans"] if s["parent_span_id"] is None)
    assert foreign["parent_span_id"] == root["span_id"]


def test_sampled_tensors_are_uploaded_content_addressed(live: LiveService, tmp_path: Path) -> None:
    import io

    import numpy as np

    init(live, tmp_path)
    model = TinyWorldModel()
    with collectors.watch(model, layers=["encoder"], tensor_sample_rate=1.0):
        trace_id = handle(model, "sampled")
    assert collectors.flush(10)
    assert collectors.stats()["tensors_exported"] == 1
    with live.client(live.key("shop", "read")) as client:
        (state,) = client.get(f"/v1/requests/{trace_id}").json()["states"]
        digest = state["tensor_sha256"]
        body = client.get(f"/v1/tensors/{digest}").raise_for_status().content
        assert client.get(f"/v1/tensors/{'0' * 64}").status_code == 404
    assert hashlib.sha256(body).hexdigest() == digest
    stored = np.load(io.BytesIO(body), allow_pickle=False)
    with torch.no_grad():
        expected = model.encoder(torch.ones(3, 4)).numpy()
    assert np.allclose(stored, expected)


def test_counters_are_also_opentelemetry_metrics(live: LiveService, tmp_path: Path) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    init(live, tmp_path, meter_provider=MeterProvider(metric_readers=[reader]))
    handle(TinyWorldModel(), "counted")
    assert collectors.flush(10)
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        metric.name: metric.data.data_points[0].value
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert points[wire.spans_metric("exported")] == 3
    assert points[wire.spans_metric("dropped")] == 0
