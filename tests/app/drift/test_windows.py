"""Drift windows read from the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import Engine, insert, update

from app.drift import windows
from app.ingest.decision_summary import summarise
from app.store.engine import write_transaction
from app.store.tables import PlannerDecision, Request, RequestModel, WorldModelState
from app.tenancy import projects

T0 = 1_900_000_000_000_000_000


def add_requests(
    engine: Engine, project_id: int, first: int, count: int, *, summarised: bool = True
) -> None:
    """`count` requests of world-model v1, the k-th one starting at T0 + k ms, each with
    features, two rollout steps of latent state per layer and a decision."""
    requests, models, states, decisions = [], [], [], []
    for k in range(first, first + count):
        trace, t = f"{k:032x}", T0 + k * 1_000_000
        requests.append({
            "project_id": project_id, "trace_id": trace, "root_span_id": f"{k:016x}",
            "name": "request", "service_name": "test", "start_time_unix_nano": t,
            "end_time_unix_nano": t + 1, "duration_ms": 0.0, "status": "ok",
            "outcome": "booked", "models": {}, "features": {"hours": float(k), "room": f"r{k % 3}"},
        })  # fmt: skip
        models.append({
            "project_id": project_id, "trace_id": trace, "role": "world_model",
            "model_name": "wm", "model_version": "1", "start_time_unix_nano": t,
        })  # fmt: skip
        for step in (0, 1):
            for layer in ("dynamics", "encoder"):
                states.append({
                    "project_id": project_id, "trace_id": trace, "span_id": f"{k:016x}",
                    "seq": step * 2 + (layer == "encoder"), "step": step, "layer": layer,
                    "projection": [float(k), float(step)], "time_unix_nano": t,
                })  # fmt: skip
        candidates = [
            {"action": f"room-{k % 4}@10:00", "score": 0.5 + k % 5 / 10},
            {"action": "room-9@11:00", "score": 0.4, "feasible": k % 2 == 0},
        ]
        summary = summarise(candidates, candidates[0]["action"]) if summarised else {}
        decisions.append({
            "project_id": project_id, "trace_id": trace, "span_id": f"{k:016x}",
            "chosen": candidates[0]["action"], "confidence": 0.9, "candidates": candidates,
            "constraints": [], "time_unix_nano": t, **summary,
        })  # fmt: skip
    if not count:
        return
    with write_transaction(engine) as conn:
        conn.execute(insert(Request), requests)
        conn.execute(insert(RequestModel), models)
        conn.execute(insert(WorldModelState), states)
        conn.execute(insert(PlannerDecision), decisions)


def bounds(first: int, count: int) -> windows.Bounds:
    return windows.Bounds(T0 + first * 1_000_000, T0 + (first + count) * 1_000_000)


def test_a_window_holds_each_request_once_in_start_order(engine: Engine) -> None:
    project_id = projects.create_project(engine, "booking")
    add_requests(engine, project_id, 0, 30)
    add_requests(engine, project_id, 30, 10, summarised=False)  # stored before summaries
    window = windows.load(engine, project_id, "wm", "1", bounds(5, 30))
    assert window.trace_ids == [f"{k:032x}" for k in range(5, 35)]
    assert window.features["hours"].tolist() == [float(k) for k in range(5, 35)]
    for layer in ("dynamics", "encoder"):
        vectors, owners = window.latent[layer]
        assert owners.tolist() == list(range(30))
        # One vector per request: the mean over its two steps.
        np.testing.assert_allclose(vectors, [[float(k), 0.5] for k in range(5, 35)])
    decisions = window.decisions
    assert window.decision_owners.tolist() == list(range(30))
    assert list(decisions.chosen) == [f"room-{k % 4}" for k in range(5, 35)]
    # Summaries: computed at ingest for the first 25, from the stored candidates for the rest.
    expected = [0.5 + k % 5 / 10 - 0.4 for k in range(5, 35)]
    np.testing.assert_allclose(np.asarray(decisions.margin), expected)
    assert np.asarray(decisions.constraints_bound).tolist() == [k % 2 == 1 for k in range(5, 35)]


def test_a_subset_keeps_requests_and_their_rows_together(engine: Engine) -> None:
    project_id = projects.create_project(engine, "booking")
    add_requests(engine, project_id, 0, 20)
    window = windows.load(engine, project_id, "wm", "1", bounds(0, 20))
    part = window.subset(np.array([17, 3, 8]))
    assert part.trace_ids == [f"{k:032x}" for k in (3, 8, 17)]
    assert part.features["hours"].tolist() == [3.0, 8.0, 17.0]
    vectors, owners = part.latent["encoder"]
    assert owners.tolist() == [0, 1, 2] and vectors[:, 0].tolist() == [3.0, 8.0, 17.0]
    assert part.decision_owners.tolist() == [0, 1, 2]
    np.testing.assert_allclose(np.asarray(part.decisions.score), [0.8, 0.8, 0.7])


def test_a_window_of_requests_without_features_can_be_sampled(engine: Engine) -> None:
    project_id = projects.create_project(engine, "booking")
    add_requests(engine, project_id, 0, 20)
    with engine.begin() as conn:
        conn.execute(update(Request).values(features={}))
    window = windows.load(engine, project_id, "wm", "1", bounds(0, 20))
    assert window.features.shape == (20, 0)
    part = window.subset(np.array([3, 8, 17]))
    assert part.trace_ids == [f"{k:032x}" for k in (3, 8, 17)]
    assert part.features.shape == (3, 0) and part.latent["encoder"][0].shape[0] == 3


@pytest.mark.parametrize("count", [0, 3])
def test_an_empty_or_stateless_window_has_empty_parts(engine: Engine, count: int) -> None:
    project_id = projects.create_project(engine, "booking")
    add_requests(engine, project_id, 0, count)
    window = windows.load(engine, project_id, "wm", "1", bounds(100, 10))
    assert window.requests == 0 and window.latent == {} and len(window.decisions) == 0
