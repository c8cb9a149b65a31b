"""What an export gathers on the way, for the manifest and the report.

Figures (counts, outcomes, the seq range), samples (the first `Facts.SAMPLE` requests,
reviews and erased ids) and the lists the manifest names (lineage, policy sets, drift
reports, files): filled while the scope is streamed, so nothing is read twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from app.audit.bundle.records import FileInfo
from app.audit.bundle.scope import Scope
from app.audit.heads import TreeHead


@dataclass
class Facts:
    """Figures and samples gathered while streaming, for the manifest and the report."""

    scope: Scope
    mode: str
    anchor: TreeHead
    project_id: int = 0
    heads_in_range: list[TreeHead] = field(default_factory=list)
    earlier_heads: int = 0
    requests: int = 0
    uncovered: int = 0
    left_out: int = 0
    erased: int = 0
    erased_ids: list[str] = field(default_factory=list)
    first_start: int | None = None
    last_start: int | None = None
    outcomes: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    sample: list[dict[str, Any]] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    review_count: int = 0
    policies: dict[tuple[str, str, str], Counter[str]] = field(default_factory=dict)
    versions: set[tuple[str, str]] = field(default_factory=set)
    lineage: list[dict[str, Any]] = field(default_factory=list)
    policy_sets: list[dict[str, Any]] = field(default_factory=list)
    drift: list[dict[str, Any]] = field(default_factory=list)
    governance: Counter[str] = field(default_factory=Counter)
    retention: dict[str, Any] = field(default_factory=dict)
    first_seq: int | None = None
    last_seq: int | None = None
    events: int = 0
    chain_checked: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    files: list[FileInfo] = field(default_factory=list)
    created_at: str = ""
    key_id: str = ""

    SAMPLE = 200

    def policy_rows(self) -> list[dict[str, Any]]:
        return [
            {"policy_id": pid, "version": version, "hash": digest, "outcomes": dict(outcomes)}
            for (pid, version, digest), outcomes in sorted(self.policies.items())
        ]
