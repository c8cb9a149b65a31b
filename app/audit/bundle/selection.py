"""Which events and requests a scope takes: the export's queries, on its one connection.

A full scope takes every event up to the anchor; a partial one the events of its requests
(found in the window of seqs written while they were ingested), the other events of the
period (unless the scope is one subject), every `erasure` and the policy sets in force. The
requests in scope are matched to their events a chunk of events at a time; those stored
before the ledger began are found last. Rows are read in chunks (`CHUNK` events), in seq
order, so memory holds one chunk.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Text, cast, func, select

from app.audit import layout
from app.audit.bundle.records import selected, table_columns
from app.audit.bundle.scope import Scope
from app.audit.heads import TreeHead
from app.store.queries import to_unix_nano
from app.store.tables import AuditEvent, Project, Request, RequestModel, RequestPayload, SubjectKey

CHUNK = 2000
# Ledger events are written in the transaction that stores their request, a moment after
# `requests.ingested_at`; the window searched for them is this much wider on each side.
_INGEST_MARGIN = timedelta(minutes=5)

# An event as the export reads it: the payload as stored (canonical JSON text) and the two
# members it needs without parsing the rest.
_EVENT_COLUMNS = (
    AuditEvent.seq,
    AuditEvent.kind,
    cast(AuditEvent.payload, Text).label("payload_text"),
    AuditEvent.payload["trace_id"].as_string().label("trace_id"),
    AuditEvent.payload[layout.SUBJECT_MEMBER].as_string().label("subject"),
    AuditEvent.prev_hash,
    AuditEvent.hash,
    AuditEvent.created_at,
)


def project_id(conn: Connection, name: str) -> int | None:
    found = conn.execute(select(Project.id).where(Project.name == name)).scalar_one_or_none()
    return None if found is None else int(found)


class Selection:
    """The scope's queries. `erased` and `policy_sets` are filled by `governance_events`."""

    def __init__(self, conn: Connection, project_id: int, scope: Scope, anchor: TreeHead) -> None:
        self.conn = conn
        self.project_id = project_id
        self.scope = scope
        self.anchor = anchor
        self.since_ns = to_unix_nano(scope.since) if scope.since else None
        self.until_ns = to_unix_nano(scope.until) if scope.until else None
        # How the ledger names the scope's subject.
        self.pseudonyms = self._pseudonyms(scope.subject) if scope.subject is not None else set()
        self.erased: set[str] = set()  # pseudonyms an `erasure` event names
        self.policy_sets: list[Any] = []
        # The request record's columns, read as the database holds them (JSON as text).
        self.request_columns = table_columns(Request, raw_json=True)
        self._request_select = selected(Request, self.request_columns)

    def first_event_time(self) -> datetime | None:
        first: datetime | None = self.conn.execute(
            select(AuditEvent.created_at).where(
                AuditEvent.project_id == self.project_id, AuditEvent.seq == 1
            )
        ).scalar_one_or_none()
        return first

    def in_period(self, moment: datetime) -> bool:
        if self.scope.since is not None and moment < self.scope.since:
            return False
        return self.scope.until is None or moment < self.scope.until

    def _pseudonyms(self, subject: str) -> set[str]:
        """The pseudonyms naming `subject` in the ledger: its own, or `subject` if it is one
        (an erased subject can only be named by its pseudonym any more)."""
        rows = self.conn.execute(
            select(SubjectKey.pseudonym).where(
                SubjectKey.project_id == self.project_id,
                (SubjectKey.subject == subject) | (SubjectKey.pseudonym == subject),
            )
        )
        return {str(p) for (p,) in rows}

    def governance_events(self) -> list[Any]:
        """The non-request events a partial scope takes; notes erasures and policy sets.

        Taken: the governance events of the period (all kinds, unless the scope is one
        subject), every `erasure` (of the subject, for a subject's export: the records'
        `erased` markers rest on them), and the policy sets in force during the period (the
        last one changed before it, and those changed in it).
        """
        rows = self.conn.execute(
            select(*_EVENT_COLUMNS, AuditEvent.payload)
            .where(
                AuditEvent.project_id == self.project_id,
                AuditEvent.seq <= self.anchor.tree_size,
                AuditEvent.kind != layout.REQUEST_KIND,
            )
            .order_by(AuditEvent.seq)
        )
        picked = []
        in_force_before: Any = None
        for event in rows:
            erased = layout.erased_pseudonym(event.kind, event.payload)
            if erased is not None:
                self.erased.add(erased)
            if event.kind == layout.POLICY_SET_KIND:
                if self.scope.since is not None and event.created_at < self.scope.since:
                    in_force_before = event
                elif self.in_period(event.created_at):
                    self.policy_sets.append(event)
                    picked.append(event)
            elif event.kind == layout.ERASURE_KIND:
                if self.scope.subject is None or erased in self.pseudonyms:
                    picked.append(event)
            elif self.in_period(event.created_at) and self.scope.subject is None:
                picked.append(event)
        if in_force_before is not None:
            self.policy_sets.insert(0, in_force_before)
            picked.append(in_force_before)
        picked.sort(key=lambda e: e.seq)
        return picked

    def _conditions(self) -> list[Any]:
        conditions: list[Any] = [Request.project_id == self.project_id]
        if self.since_ns is not None:
            conditions.append(Request.start_time_unix_nano >= self.since_ns)
        if self.until_ns is not None:
            conditions.append(Request.start_time_unix_nano < self.until_ns)
        if self.scope.model_name:
            match = select(RequestModel.trace_id).where(
                RequestModel.project_id == self.project_id,
                RequestModel.model_name == self.scope.model_name,
            )
            if self.scope.model_version:
                match = match.where(RequestModel.model_version == self.scope.model_version)
            conditions.append(Request.trace_id.in_(match))
        return conditions

    def request_event_window(self) -> tuple[int, int]:
        """The seq range where the ledger events of the requests in scope can be."""
        low, high = self.conn.execute(
            select(func.min(Request.ingested_at), func.max(Request.ingested_at)).where(
                *self._conditions()
            )
        ).one()
        if low is None:
            return 1, 0
        window = self.conn.execute(
            select(func.min(AuditEvent.seq), func.max(AuditEvent.seq)).where(
                AuditEvent.project_id == self.project_id,
                AuditEvent.kind == layout.REQUEST_KIND,
                AuditEvent.created_at >= low - _INGEST_MARGIN,
                AuditEvent.created_at <= high + _INGEST_MARGIN,
                AuditEvent.seq <= self.anchor.tree_size,
            )
        ).one()
        if window[0] is None:
            return 1, 0
        return int(window[0]), int(window[1])

    def _in_scope(self, request: Any, models: list[Any], pseudonym: str | None) -> bool:
        start = request.start_time_unix_nano
        if self.since_ns is not None and start < self.since_ns:
            return False
        if self.until_ns is not None and start >= self.until_ns:
            return False
        if self.scope.model_name and not any(
            m.model_name == self.scope.model_name
            and (not self.scope.model_version or m.model_version == self.scope.model_version)
            for m in models
        ):
            return False
        if self.scope.subject is not None:
            return self.scope.subject == request.subject or pseudonym in self.pseudonyms
        return True

    def events(self, lo: int, hi: int, requests_only: bool) -> Iterator[Sequence[Any]]:
        """The events of seq lo..hi, a chunk at a time."""
        query = (
            select(*_EVENT_COLUMNS)
            .where(
                AuditEvent.project_id == self.project_id,
                AuditEvent.seq >= lo,
                AuditEvent.seq <= hi,
            )
            .order_by(AuditEvent.seq)
        )
        if requests_only:
            query = query.where(AuditEvent.kind == layout.REQUEST_KIND)
        result = self.conn.execution_options(yield_per=CHUNK).execute(query)
        yield from result.partitions()

    def match(self, part: Sequence[Any], covered: set[str]) -> dict[int, Any]:
        """The requests in scope among a chunk's request events (but those in `covered`,
        exported already), by event seq."""
        by_trace: dict[str, Any] = {}
        for row in part:
            trace_id = row.trace_id
            if row.kind == layout.REQUEST_KIND and trace_id and trace_id not in covered:
                by_trace[trace_id] = row
        if not by_trace:
            return {}
        ids = list(by_trace)
        requests = self.conn.execute(
            select(*self._request_select).where(
                Request.project_id == self.project_id, Request.trace_id.in_(ids)
            )
        )
        models: dict[str, list[Any]] = {}
        if self.scope.model_name:
            for m in self.conn.execute(
                select(RequestModel).where(
                    RequestModel.project_id == self.project_id, RequestModel.trace_id.in_(ids)
                )
            ):
                models.setdefault(m.trace_id, []).append(m)
        matched = {}
        for request in requests:
            event = by_trace[request.trace_id]
            if self._in_scope(request, models.get(request.trace_id, []), event.subject):
                matched[event.seq] = request
        return matched

    def requests_before_ledger(
        self, ledger_start: datetime | None, covered: set[str]
    ) -> Iterator[tuple[Sequence[Any], int]]:
        """Requests in scope stored before the ledger began, not in `covered`, a chunk at a
        time, each with how many of the chunk's were stored since the ledger began.

        Those stored since, without an event up to the anchor (newer than the anchor, or
        missing from the ledger), are counted, not exported.
        """
        cutoff = self.anchor.signed_at
        conditions = [*self._conditions(), Request.ingested_at <= cutoff]
        if self.scope.subject is not None:
            conditions.append(Request.subject == self.scope.subject)
        in_scope = self.conn.execute(select(func.count()).where(*conditions)).scalar_one()
        if self.scope.subject is None and in_scope <= len(covered):
            return
        query = (
            select(Request.trace_id, Request.ingested_at)
            .where(*conditions)
            .order_by(Request.start_time_unix_nano, Request.id)
        )
        result = self.conn.execution_options(yield_per=CHUNK * 10).execute(query)
        for part in result.partitions():
            fresh = []
            left_out = 0
            for trace_id, ingested_at in part:
                if trace_id in covered:
                    continue
                if ledger_start is None or ingested_at < ledger_start:
                    fresh.append(trace_id)
                else:
                    left_out += 1
            if not fresh:
                yield [], left_out
                continue
            rows = self.conn.execute(
                select(*self._request_select)
                .where(Request.project_id == self.project_id, Request.trace_id.in_(fresh))
                .order_by(Request.start_time_unix_nano, Request.id)
            ).all()
            yield rows, left_out

    def input_states(self, trace_ids: list[str]) -> dict[str, str]:
        """`retained` or `erased` (its key destroyed) for the requests with a kept input."""
        if not trace_ids:
            return {}
        rows = self.conn.execute(
            select(RequestPayload.trace_id, SubjectKey.key.is_(None))
            .join(SubjectKey, SubjectKey.id == RequestPayload.subject_key_id)
            .where(RequestPayload.project_id == self.project_id,
                   RequestPayload.trace_id.in_(trace_ids))
        )  # fmt: skip
        return {trace_id: "erased" if gone else "retained" for trace_id, gone in rows}
