"""The request list's filters on a real database (SQLite and PostgreSQL): every combination
answers what a plain filter over all rows answers, page after page, whether a filter is
narrow (looked up by trace id) or broad (checked request by request)."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from app.errors import BadRequest
from app.store import queries
from app.store.engine import write_transaction
from app.store.tables import PolicyEvaluation, Request, RequestModel
from app.tenancy import projects

NS = 1_000_000_000
BASE = 1_800_000_000 * NS
OUTCOMES = ("booked", "clarify", "denied")


def _fill(engine: Engine, n: int = 400) -> tuple[int, list[dict[str, Any]]]:
    pid = projects.create_project(engine, "filters")
    other = projects.create_project(engine, "elsewhere")
    rng = random.Random(3)
    rows, stages, verdicts, truth = [], [], [], []
    for i in range(n):
        trace = f"{i:032x}"
        start = BASE + rng.randrange(100) * NS  # many share a start time: ties on the cursor
        version = "2" if i % 10 == 0 else "1"  # v2 is narrow, v1 broad
        outcome = OUTCOMES[i % 3]
        fingerprint = f"{i % 7:064x}"
        policy = "deny" if i % 25 == 0 else ("require_review" if i % 4 == 0 else "allow")
        for project in (pid, other):
            rows.append({
                "project_id": project, "trace_id": trace, "root_span_id": f"{i:016x}",
                "name": "request", "service_name": "s", "start_time_unix_nano": start,
                "end_time_unix_nano": start + 1, "duration_ms": 1.0, "status": "ok",
                "fingerprint": fingerprint, "fingerprint_key_id": "k1", "subject": None,
                "outcome": outcome, "models": {}, "features": None,
            })  # fmt: skip
            stages += [
                {"project_id": project, "trace_id": trace, "role": role, "model_name": name,
                 "model_version": v, "start_time_unix_nano": start}
                for role, name, v in (("world_model", "wm", version), ("llm", "parser", "1"))
            ]  # fmt: skip
            verdicts.append({
                "project_id": project, "trace_id": trace, "span_id": f"{i:016x}", "seq": 0,
                "phase": "post_decision", "policy_id": "risk-cap", "policy_version": "1",
                "policy_hash": "h", "outcome": policy, "message": None,
                # judged during the request: its order is not quite the requests' order
                "time_unix_nano": start + rng.randrange(30) * NS,
            })  # fmt: skip
        truth.append({
            "trace_id": trace, "start": start, "version": version, "outcome": outcome,
            "fingerprint": fingerprint, "policy": policy,
        })  # fmt: skip
    with write_transaction(engine) as conn:
        conn.execute(insert(Request), rows)
        conn.execute(insert(RequestModel), stages)
        conn.execute(insert(PolicyEvaluation), verdicts)
    return pid, truth


def _all_pages(engine: Engine, pid: int, flt: queries.RequestFilter) -> list[str]:
    seen, cursor = [], None
    while True:
        page = queries.list_requests(engine, pid, flt, limit=7, cursor=cursor)
        seen += [item.trace_id for item in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return seen


def _expected(truth: list[dict[str, Any]], **want: Any) -> list[str]:
    rows = [t for t in truth if all(t[k] == v for k, v in want.items() if k != "since")]
    if "since" in want:
        rows = [t for t in rows if t["start"] >= want["since"]]
    # newest first; ties by insertion order, newest first (the request id)
    order = {t["trace_id"]: i for i, t in enumerate(truth)}
    rows.sort(key=lambda t: (t["start"], order[t["trace_id"]]), reverse=True)
    return [t["trace_id"] for t in rows]


@pytest.mark.parametrize("selective", [0, 10_000])  # fingerprints broad; fingerprints narrow
def test_every_filter_combination_pages_like_a_plain_filter(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, selective: int
) -> None:
    monkeypatch.setattr(queries, "SELECTIVE", selective)
    pid, truth = _fill(engine)
    since = BASE + 50 * NS
    options: dict[str, list[Any]] = {
        "version": [None, "1", "2"],
        "outcome": [None, "denied"],
        "fingerprint": [None, f"{3:064x}"],
        "policy": [None, "deny", "require_review"],
        "since": [None, since],
    }
    for combo in itertools.product(*options.values()):
        chosen = dict(zip(options, combo, strict=True))
        flt = queries.RequestFilter(
            since=datetime.fromtimestamp(since / NS, UTC) if chosen["since"] else None,
            model_name="wm" if chosen["version"] else None, model_version=chosen["version"],
            outcome=chosen["outcome"], fingerprint=chosen["fingerprint"],
            policy_id="risk-cap" if chosen["policy"] else None, policy_outcome=chosen["policy"],
        )  # fmt: skip
        want = {k: v for k, v in chosen.items() if v is not None}
        assert _all_pages(engine, pid, flt) == _expected(truth, **want), chosen


def test_a_policy_outcome_needs_its_policy(engine: Engine) -> None:
    pid = projects.create_project(engine, "p")
    with pytest.raises(BadRequest):
        queries.list_requests(engine, pid, queries.RequestFilter(policy_outcome="deny"))
