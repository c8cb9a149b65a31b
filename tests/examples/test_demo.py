"""End to end: demo traffic through the instrumented stack into a live service."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from pathlib import Path
from typing import Any

from examples.booking import demo
from examples.booking.registry import TrainingSpec
from examples.booking.sim import STATE_COLUMNS
from examples.booking.world_model import TrainConfig
from tests.conftest import LiveService

SECRET = "demo-test-secret"


def all_requests(client: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/requests", params=params).raise_for_status().json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_200_demo_requests_are_recorded_whole(live: LiveService, tmp_path: Path) -> None:
    key = live.key("default", "ingest", "read")
    result = demo.run(
        live.url,
        key,
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        fingerprint_secret=SECRET,
        spool_dir=tmp_path / "spool",
        requests=200,
        spec=TrainingSpec(n_samples=3000, train=TrainConfig(epochs=2)),
        log=lambda _line: None,
    )
    assert result.requests == 200 and result.delivered
    assert result.stats["dropped"] == 0 and result.stats["rejected"] == 0
    assert len(result.outcomes) >= 2  # a realistic mix, not one answer for everything

    with live.client(key) as client:
        stored = all_requests(client)
        assert len(stored) == 200
        # Fingerprints recomputed independently: HMAC-SHA256 of the canonical JSON input.
        expected = Counter(
            hmac.new(
                SECRET.encode(),
                json.dumps({"text": t}, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False).encode(),
                hashlib.sha256,
            ).hexdigest()
            for t in result.texts
        )  # fmt: skip
        assert Counter(r["fingerprint"] for r in stored) == expected
        assert Counter(r["outcome"] for r in stored) == result.outcomes
        rolled_out = 0
        for summary in stored:
            detail = client.get(f"/v1/requests/{summary['request_id']}").raise_for_status().json()
            assert set(detail["models"]) == {"llm", "world_model", "planner"}
            assert detail["models"]["world_model"]["name"] == "booking-world-model"
            (decision,) = detail["decisions"]
            states = sorted((s["layer"], s["step"]) for s in detail["states"])
            # The intent, as features named like the training dataset's columns.
            assert set(detail["features"]) <= set(STATE_COLUMNS[:8])
            assert "intent_needs_video" in detail["features"]
            if decision["candidates"]:
                rolled_out += 1
                assert set(detail["features"]) == set(STATE_COLUMNS[:8])
                # One state per captured step and layer: the encoder once, the transition
                # at each of the 8 steps of the rollout.
                assert states == [("encoder", 0)] + [("transition", i) for i in range(8)]
                assert all(len(s["projection"]) == 16 for s in detail["states"])
                assert len(decision["candidates"]) == 16
                assert {"action", "score", "predicted"} <= set(decision["candidates"][0])
                if detail["outcome"] != "clarify":
                    labels = {c["action"] for c in decision["candidates"]}
                    assert decision["chosen"] in labels
            else:
                assert states == []
                assert detail["outcome"] == "clarify"
    assert rolled_out >= 150


def test_a_decision_over_the_risk_cap_is_handed_over_and_stored(
    live: LiveService, tmp_path: Path, trained: Any
) -> None:
    import collectors
    from examples.booking.instrumented import InstrumentedAssistant
    from policies import BUILTIN, PolicySet

    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "risk-cap.yaml").write_text(
        (BUILTIN / "risk-cap.yaml").read_text().replace("probability: 0.35", "probability: 0.0")
    )
    key = live.key("default", "ingest", "read")
    collectors.init(endpoint=live.url, api_key=key, fingerprint_secret=SECRET,
                    spool_dir=tmp_path / "spool", policies=policies)  # fmt: skip
    assistant = InstrumentedAssistant(trained.model, "booking-world-model", "1")
    busy_before = assistant.calendar.busy.copy()
    try:
        answer = assistant.handle("a room for 6 people tomorrow 3-5pm, with a projector")
    finally:
        assistant.close()
    assert answer.kind == "handed_over"
    assert "exceeds the cap 0" in answer.message
    assert (assistant.calendar.busy == busy_before).all()  # nothing was booked
    assert collectors.flush(10)
    collectors.shutdown()

    expected = PolicySet.load_dir(policies).get("risk-cap")
    with live.client(key) as client:
        (item,) = client.get("/v1/requests").json()["items"]
        detail = client.get(f"/v1/requests/{item['request_id']}").json()
    assert detail["outcome"] == "denied"
    denials = [e for e in detail["policy_evaluations"] if e["outcome"] == "deny"]
    assert [(e["policy_id"], e["policy_version"], e["policy_hash"]) for e in denials] == [
        ("risk-cap", expected.version, expected.hash)
    ]
