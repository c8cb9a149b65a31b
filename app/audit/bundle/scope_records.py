"""The scope's record files: each request, the rows of other tables that belong to it, the
model versions they name, the period's drift reports; and the facts noted on the way.

A request record is the request's columns, then `input` (the state of its sealed raw input),
`erased` (its ledger event names a subject an `erasure` event names) and last `ledger`, the
reference to its event (`layout.ledger_reference`, or null for a request stored before the
ledger began). Records with an event go to the requests part of their event's part; those
without one to parts of their own after the ledger's. Every table is written as JSON Lines
and Parquet at once (`records.TableSink`).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from app.audit import chain, layout
from app.audit.bundle.facts import Facts
from app.audit.bundle.records import (
    Column,
    HashingWriter,
    TableSink,
    selected,
    table_columns,
)
from app.audit.bundle.scope import Scope
from app.store.tables import (
    DriftReport,
    ModelVersion,
    PlannerDecision,
    PolicyEvaluation,
    Project,
    Request,
    RequestModel,
    Review,
    Score,
    Span,
    WorldModelState,
)

_RELATED: tuple[tuple[str, Any, tuple[str, ...]], ...] = (
    # (table, model, order of a trace's rows)
    ("request_models", RequestModel, ("role",)),
    ("spans", Span, ("start_time_unix_nano", "span_id")),
    ("world_model_states", WorldModelState, ("span_id", "seq")),
    ("planner_decisions", PlannerDecision, ("time_unix_nano", "span_id")),
    ("policy_evaluations", PolicyEvaluation, ("time_unix_nano", "span_id", "seq")),
    ("reviews", Review, ("created_at", "id")),
    ("scores", Score, ("created_at", "id")),
)
_NOTED = frozenset({"request_models", "policy_evaluations", "reviews"})
_REQUEST_EXTRA = (Column("input", "str"), Column("erased", "bool"), Column("ledger", "rawjson"))


class ScopeRecords:
    """The record files of one export, open until `close`; `covered` is the set of the
    exported requests' trace ids."""

    def __init__(
        self,
        conn: Connection,
        staging: Path,
        scope: Scope,
        facts: Facts,
        request_columns: list[Column],
        erased: set[str],
        part_events: int,
    ) -> None:
        self.conn = conn
        self.staging = staging
        self.scope = scope
        self.facts = facts
        self.project_id = facts.project_id
        self.erased = erased  # pseudonyms an `erasure` event names
        self.part_events = part_events
        self.covered: set[str] = set()
        self.unlinked = 0  # requests written without a ledger event
        self.sinks: dict[str, TableSink] = {}
        self.empty: set[str] = set()  # tables without a row of the project: never queried
        self.requests = self.sinks["requests"] = TableSink(
            staging, "requests", [*request_columns, *_REQUEST_EXTRA], layout.requests_part
        )
        for table, model, _ in _RELATED:
            self.sinks[table] = TableSink(staging, table, table_columns(model, raw_json=True))
            has_rows = conn.execute(
                select(model.id).where(model.project_id == self.project_id).limit(1)
            ).first()
            if has_rows is None:
                self.empty.add(table)

    def write_request(
        self, request: Any, event: tuple[Any, bytes] | None, input_state: str
    ) -> None:
        """One request record; `event` is its ledger row and the reference the record ends
        with (`"ledger": {"hash": ..., "seq": ...}`). Records without an event go to the
        requests parts after the ledger's."""
        if event is None:
            if self.unlinked % self.part_events == 0:
                self.requests.next_part()
            self.unlinked += 1
        self.covered.add(request.trace_id)
        erased = event is not None and event[0].subject in self.erased
        self.requests.add((*request, input_state, erased, event and event[1]))
        facts = self.facts
        facts.requests += 1
        start = request.start_time_unix_nano
        if facts.first_start is None or start < facts.first_start:
            facts.first_start = start
        if facts.last_start is None or start > facts.last_start:
            facts.last_start = start
        facts.outcomes[request.outcome or "(none)"] += 1
        facts.statuses[request.status] += 1
        if erased:
            facts.erased += 1
            if len(facts.erased_ids) < facts.SAMPLE:
                facts.erased_ids.append(request.trace_id)
        if len(facts.sample) < facts.SAMPLE:
            facts.sample.append(
                {
                    "trace_id": request.trace_id,
                    "start": start,
                    "end": request.end_time_unix_nano,
                    "outcome": request.outcome,
                    "fingerprint": request.fingerprint,
                    "models": orjson.loads(request.models) if request.models else {},
                    "erased": erased,
                    "seq": event[0].seq if event is not None else None,
                }
            )

    def write_related(self, trace_ids: list[str]) -> None:
        """The rows of the other tables that belong to these requests, in their order."""
        if not trace_ids:
            return
        position = {t: i for i, t in enumerate(trace_ids)}
        for table, model, order in _RELATED:
            if table in self.empty:
                continue
            sink = self.sinks[table]
            rows = self.conn.execute(
                select(*selected(model, sink.columns))
                .where(model.project_id == self.project_id, model.trace_id.in_(trace_ids))
                .order_by(*(getattr(model, o) for o in order))
            ).all()
            for item in sorted(rows, key=lambda r: position[r.trace_id]):
                record = sink.add(item)
                if table in _NOTED:
                    self._note(table, record)

    def _note(self, table: str, record: dict[str, Any]) -> None:
        facts = self.facts
        if table == "request_models":
            facts.versions.add((record["model_name"], record["model_version"]))
        elif table == "policy_evaluations":
            key = (record["policy_id"], record["policy_version"] or "", record["policy_hash"] or "")
            facts.policies.setdefault(key, Counter())[record["outcome"]] += 1
        elif table == "reviews":
            facts.review_count += 1
            if len(facts.reviews) < facts.SAMPLE:
                facts.reviews.append(record)

    def close(self) -> None:
        """The model versions the records name, then every table's files closed and listed."""
        self._model_versions()
        for table, sink in self.sinks.items():
            self.facts.files.extend(sink.close())
            self.facts.counts[table] = sink.count

    def _model_versions(self) -> None:
        """The versions the exported requests name (of the scope's model only, if one)."""
        versions = {
            (name, version)
            for name, version in self.facts.versions
            if not self.scope.model_name
            or (
                name == self.scope.model_name
                and (not self.scope.model_version or version == self.scope.model_version)
            )
        }
        columns = table_columns(ModelVersion)
        sink = TableSink(self.staging, "model_versions", columns)
        self.sinks["model_versions"] = sink
        rows = self.conn.execute(
            select(ModelVersion)
            .where(ModelVersion.project_id == self.project_id)
            .order_by(ModelVersion.name, ModelVersion.version)
        )
        for version in rows:
            if (version.name, version.version) not in versions:
                continue
            record = sink.add({c.name: getattr(version, c.name) for c in columns})
            self.facts.lineage.append(
                {k: record[k] for k in ("name", "version", "role", "status", "run_id", "lineage")}
            )

    def drift_reports(self) -> None:
        query = select(DriftReport).where(DriftReport.project_id == self.project_id)
        if self.scope.since is not None:
            query = query.where(DriftReport.created_at >= self.scope.since)
        if self.scope.until is not None:
            query = query.where(DriftReport.created_at < self.scope.until)
        if self.scope.model_name:
            query = query.where(DriftReport.model_name == self.scope.model_name)
            if self.scope.model_version:
                query = query.where(DriftReport.model_version == self.scope.model_version)
        out = HashingWriter(self.staging, layout.DRIFT)
        columns = table_columns(DriftReport)
        count = 0
        for report in self.conn.execute(query.order_by(DriftReport.created_at, DriftReport.id)):
            record = {c.name: getattr(report, c.name) for c in columns}
            record["created_at"] = chain.format_time(record["created_at"])
            out.write_line(orjson.dumps(record))
            count += 1
            self.facts.drift.append(
                {k: record[k] for k in ("model_name", "model_version", "kind", "verdict",
                                        "created_at", "mlflow_run_id")}
            )  # fmt: skip
        self.facts.files.append(out.close(count))
        self.facts.counts["drift_reports"] = count

    def retention(self, ledger_start: datetime | None) -> None:
        """The retention policy and how far back the ledger and the requests go."""
        oldest_request = self.conn.execute(
            select(func.min(Request.ingested_at)).where(Request.project_id == self.project_id)
        ).scalar_one_or_none()
        settings = self.conn.execute(
            select(Project.settings).where(Project.id == self.project_id)
        ).scalar_one_or_none()
        policy = (settings or {}).get("retention") or {}
        self.facts.retention = {
            "days": policy.get("days"),
            "high_risk": bool(policy.get("high_risk")),
            "ledger_since": chain.format_time(ledger_start) if ledger_start else None,
            "requests_since": chain.format_time(oldest_request) if oldest_request else None,
            "retention_events": sum(
                n for kind, n in self.facts.governance.items() if kind.startswith("retention")
            ),
        }
