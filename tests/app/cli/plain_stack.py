"""A stack other than the booking assistant, meeting the contracts of `warden demo` and
`warden replay` (app/cli/demo.py) with no torch and no MLflow: named in `WARDEN_DEMO` and
`WARDEN_REPLAY`, it shows the commands know no stack's classes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ASKED = {"text": "a table for two"}


@dataclass
class Sent:
    requests: int
    outcomes: dict[str, int]
    delivered: bool
    stats: dict[str, object]


def demo(
    endpoint: str,
    api_key: str,
    tracking_uri: str,
    *,
    fingerprint_secret: str,
    spool_dir: Path,
    requests: int | None,
    shift: bool,
    seed: int,
    rate: float | None,
    progress: Callable[[int], None],
    log: Callable[[str], None],
) -> Sent:
    """Sends nothing: tells what it was given, and answers every third request with a refusal."""
    log(f"plain stack: {endpoint} key {api_key} shift={shift} seed={seed} rate={rate} "
        f"spool={spool_dir.name} secret={'yes' if fingerprint_secret else 'no'}")  # fmt: skip
    count = requests or 0
    for n in range(count):
        progress(n + 1)
    refused = count // 3
    return Sent(count, {"seated": count - refused, "refused": refused}, True, {"exported": count})


@dataclass
class SentInExperiment(Sent):
    experiment: str | None = None


def experiment_demo(
    endpoint: str,
    api_key: str,
    tracking_uri: str,
    *,
    experiment: str | None = None,
    log: Callable[[str], None],
    **given: Any,
) -> Sent:
    """A stack that also runs experiments: tells which one it was asked for, and names the
    experiment it "started"."""
    log(f"plain stack: experiment={experiment}")
    sent = demo(endpoint, api_key, tracking_uri, log=log, **given)
    started = f"plain-{experiment}" if experiment else None
    return SentInExperiment(sent.requests, sent.outcomes, sent.delivered, sent.stats, started)


def replay(input: Any, tracking_uri: str, versions: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Version "1" seats the guests where nothing conflicts; any other version picks a risky
    table with little confidence, and ranks a candidate that predicts nothing."""
    answers = []
    for name, version in versions:
        safe = {"action": "room-01@19:00", "score": 0.9, "feasible": True,
                "predicted": {"conflict_probability": 0.05}}  # fmt: skip
        risky = {"action": "room-02@20:00", "score": 0.95, "feasible": True,
                 "predicted": {"conflict_probability": 0.8}}  # fmt: skip
        bare = {"action": "room-03@21:00", "score": 0.4}
        if version == "1":
            decision = {"candidates": [safe, bare], "chosen": safe["action"], "confidence": 0.9}
        else:
            decision = {"candidates": [safe, risky, bare], "chosen": risky["action"],
                        "confidence": 0.5}  # fmt: skip
        kind = "seated" if input == ASKED else f"unexpected input {input!r}"
        answers.append({"name": name, "version": version, "kind": kind, "decision": decision})
    return answers


def broken_replay(input: Any, tracking_uri: str, versions: list[tuple[str, str]]) -> list[Any]:
    """Breaks the contract: a decision without candidates."""
    return [{"name": n, "version": v, "kind": "seated", "decision": {}} for n, v in versions]
