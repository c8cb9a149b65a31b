"""The policies page: the loaded set with versions and hashes, how often each policy fired
over a range, and the review queue (pending, and recently decided)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Engine

from app.dashboard.views.overview import RANGES, range_seconds
from app.governance import reviews
from app.governance.read_models import ReviewOut
from app.store import queries
from policies import Policy, PolicySet

DEFAULT_RANGE = "7d"
DECIDED_SHOWN = 20


@dataclass(frozen=True)
class PolicyRow:
    policy: Policy
    counts: dict[str, int]  # evaluations per outcome over the range
    total: int
    rate: float | None  # the share that did not allow; None without evaluations


@dataclass(frozen=True)
class PoliciesPage:
    rows: list[PolicyRow]  # by phase and id
    set_hash: str
    range: str
    ranges: list[str]
    pending: list[ReviewOut]  # oldest first
    done: list[ReviewOut]  # the newest decided first
    decided: int | None  # the review just decided
    error: str | None


def policies_page(
    engine: Engine,
    policy_set: PolicySet,
    project_id: int,
    range_key: str = DEFAULT_RANGE,
    decided: int | None = None,
    error: str | None = None,
) -> PoliciesPage:
    since = time.time_ns() - range_seconds(range_key) * 1_000_000_000
    hits = queries.policy_hits(engine, project_id, [p.id for p in policy_set.policies], since)
    rows = []
    for p in sorted(policy_set.policies, key=lambda p: (p.phase.value, p.id)):
        counts = hits.get(p.id, {})
        total = sum(counts.values())
        fired = total - counts.get("allow", 0)
        rows.append(PolicyRow(p, counts, total, fired / total if total else None))
    pending = reviews.list_reviews(engine, project_id, "pending")
    decided_ones = [
        *reviews.list_reviews(engine, project_id, "approved"),
        *reviews.list_reviews(engine, project_id, "rejected"),
    ]
    done = sorted(decided_ones, key=lambda r: r.decided_at or r.created_at, reverse=True)
    return PoliciesPage(
        rows=rows, set_hash=policy_set.hash, range=range_key, ranges=list(RANGES),
        pending=pending, done=done[:DECIDED_SHOWN], decided=decided, error=error,
    )  # fmt: skip
