"""Export bundles: the records of a scope, their ledger events and proofs, signed, in one zip.

A scope is a project, a period [since, until) of request start times, and optionally one
model (name, or name and version) and one subject. The bundle (layout in `layout`) holds:

- the records of the requests in scope (and their spans, world-model states, planner
  decisions, policy evaluations, reviews, model stages; the model versions they name), as
  JSON Lines and Parquet; each request names its ledger event (seq and hash);
- the ledger: in a **full** scope (no model, no subject, a period open at the start) every
  event from seq 1 up to the anchor head, so the verifier replays the chain and recomputes
  the root; in a **partial** scope only the selected events — the requests' own, the
  governance events of the period (`policy_set.changed`, promotions, ...), the `erasure`
  events — with RFC 6962 inclusion proofs against the anchor head (`ledger/proofs.jsonl`,
  one per run of consecutive seqs: the chain links each event of a run to its last);
- per request, whether it is `erased`: its ledger event names its subject by a pseudonym
  (`subject_keys`), and an `erasure` event names the pseudonyms whose key was destroyed;
  and the state of its retained input (`input`: retained, erased or absent);
- the anchor: the newest signed tree head, signed now over the whole log if no stored head
  covers it yet; every earlier head with a consistency proof to it (`ledger/heads.jsonl`),
  so an auditor who kept any of them can check the log was only appended to;
- drift reports of the period, a report for people (HTML and PDF), and `manifest.json`
  (scope, counts, ledger range, heads, policy sets in force, lineage, the SHA-256 of every
  file) signed with the audit signing key (`manifest.sig`).

The ledger and the request records are written in numbered parts of `layout.PART_EVENTS`
events (the records of the requests whose events are in events part k make requests part k),
so a verifier can check the parts in parallel.

Rows are streamed in chunks of ledger events, in seq order: memory holds one chunk, one
Parquet row group per table, the Merkle tree of the log (~70 bytes an event) and the set of
exported request ids.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Engine, Text, cast, func, insert, select
from sqlalchemy.exc import IntegrityError

from app.audit import chain, fastjcs, heads, jcs, layout, merkle
from app.audit.heads import TreeHead
from app.audit.ledger import checkpoints
from app.audit.records import (
    Column,
    FileInfo,
    HashingWriter,
    PartWriter,
    TableSink,
    hash_file,
    selected,
    table_columns,
    utc_text,
)
from app.errors import BadRequest, Conflict, NotFound
from app.store.engine import read_connection, write_transaction
from app.store.queries import to_unix_nano
from app.store.tables import (
    AuditCheckpoint,
    AuditEvent,
    DriftReport,
    ModelVersion,
    PlannerDecision,
    PolicyEvaluation,
    Project,
    Request,
    RequestModel,
    RequestPayload,
    Review,
    Span,
    SubjectKey,
    WorldModelState,
)

CHUNK = 2000
# Ledger events are written in the transaction that stores their request, a moment after
# `requests.ingested_at`; the window searched for them is this much wider on each side.
_INGEST_MARGIN = timedelta(minutes=5)
_SORTED = orjson.OPT_SORT_KEYS
_sha256 = hashlib.sha256

Progress = Callable[[int, int], None]

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


class LedgerMismatch(Conflict):
    """The ledger in the database contradicts itself or its signed heads: nothing exported."""


@dataclass(frozen=True)
class Scope:
    """What to export. `since` is inclusive, `until` exclusive; both aware datetimes."""

    project: str
    since: datetime | None = None
    until: datetime | None = None
    model_name: str | None = None
    model_version: str | None = None
    subject: str | None = None

    def __post_init__(self) -> None:
        if self.model_version and not self.model_name:
            raise BadRequest("a model version needs the model's name too")
        for moment in (self.since, self.until):
            if moment is not None and moment.tzinfo is None:
                raise BadRequest("give times with a time zone, e.g. 2025-01-02T00:00:00Z")
        if self.since and self.until and self.since >= self.until:
            raise BadRequest("the period is empty: --from must be before --to")

    @property
    def filtered(self) -> bool:
        return bool(self.model_name or self.subject)

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "from": chain.format_time(self.since) if self.since else None,
            "to": chain.format_time(self.until) if self.until else None,
            "model": (
                {"name": self.model_name, "version": self.model_version}
                if self.model_name
                else None
            ),
            "subject": self.subject,
        }


def parse_model(text: str | None) -> tuple[str | None, str | None]:
    """`name` or `name/version` (a version is the digits after the last slash).

    >>> parse_model("booking-world-model/4"), parse_model("org/model")
    (('booking-world-model', '4'), ('org/model', None))
    """
    if not text:
        return None, None
    name, _, version = text.rpartition("/")
    if name and version.isdigit():
        return name, version
    return text, None


def software_version() -> str:
    try:
        return importlib.metadata.version("warden")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# --- the signing key and the anchor head ------------------------------------------------


def _leaf_hashes(conn: Connection, project_id: int, size: int) -> list[bytes]:
    """The event hashes of seq 1..size, checked to be exactly those seqs."""
    result = conn.execution_options(yield_per=50_000).execute(
        select(AuditEvent.seq, AuditEvent.hash)
        .where(AuditEvent.project_id == project_id, AuditEvent.seq <= size)
        .order_by(AuditEvent.seq)
    )
    hashes: list[bytes] = []
    for seq, event_hash in result:
        if seq != len(hashes) + 1:
            raise LedgerMismatch(
                f"the ledger has no event {len(hashes) + 1} (it goes on at {seq}); "
                "run `warden audit verify` to see where it broke"
            )
        hashes.append(bytes(event_hash))
    if len(hashes) != size:
        raise LedgerMismatch(
            f"the ledger holds {len(hashes)} events but a signed head says {size}: "
            "events were cut off; run `warden audit verify`"
        )
    return hashes


def _sign_anchor(
    engine: Engine, project_id: int, project: str, key: Ed25519PrivateKey, size: int, root: bytes
) -> TreeHead:
    """A signed head of the whole log: the signer's (`checkpoints.sign_heads`), or, for a
    ledger written without the live ledger's head row, one signed here over (size, root)."""
    checkpoints.sign_heads(engine, key, project_id)
    with read_connection(engine) as conn:
        stored = checkpoints.stored_heads(conn, project_id, project)
    if stored and stored[-1].tree_size == size:
        return stored[-1]
    head = heads.sign_head(key, project, size, root, datetime.now(UTC))
    try:
        with write_transaction(engine) as conn:
            conn.execute(
                insert(AuditCheckpoint).values(
                    project_id=project_id, tree_size=size, root_hash=root,
                    signed_at=head.signed_at, key_id=head.key_id, signature=head.signature,
                )
            )  # fmt: skip
    except IntegrityError:  # signed meanwhile
        with read_connection(engine) as conn:
            stored = checkpoints.stored_heads(conn, project_id, project)
        head = next(h for h in stored if h.tree_size == size)
    return head


@dataclass
class _Log:
    """The project's log as the export sees it: the anchor, the earlier heads, the tree."""

    anchor: TreeHead
    earlier: list[TreeHead]
    tree: merkle.MerkleTree


def _prepare_log(
    engine: Engine, project_id: int, project: str, key: Ed25519PrivateKey
) -> _Log:
    with read_connection(engine) as conn:
        size = int(
            conn.execute(
                select(func.coalesce(func.max(AuditEvent.seq), 0)).where(
                    AuditEvent.project_id == project_id
                )
            ).scalar_one()
        )
        stored = checkpoints.stored_heads(conn, project_id, project)
        size = max([size, *(h.tree_size for h in stored)])
        hashes = _leaf_hashes(conn, project_id, size)
    tree = merkle.MerkleTree(merkle.leaf_hash(h) for h in hashes)
    for head in stored:
        if tree.root(head.tree_size) != head.root_hash:
            raise LedgerMismatch(
                f"the ledger's first {head.tree_size} events do not give the root of the head "
                f"signed at {chain.format_time(head.signed_at)}: the log was changed after it "
                "was signed; run `warden audit verify`"
            )
    newest = stored[-1] if stored else None
    if newest is not None and newest.tree_size == size:
        anchor = newest
    else:
        anchor = _sign_anchor(engine, project_id, project, key, size, tree.root(size))
    earlier = [h for h in stored if h.tree_size < anchor.tree_size]
    return _Log(anchor, earlier, tree)


# --- what the export collects on the way, for the manifest and the report --------------


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


# --- the export --------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportResult:
    path: Path
    manifest: dict[str, Any]
    manifest_bytes: bytes
    report_html: str
    facts: Facts
    seconds: float
    bytes: int
    sha256: str


_RELATED: tuple[tuple[str, Any, tuple[str, ...]], ...] = (
    # (table, model, order of a trace's rows)
    ("request_models", RequestModel, ("role",)),
    ("spans", Span, ("start_time_unix_nano", "span_id")),
    ("world_model_states", WorldModelState, ("span_id", "seq")),
    ("planner_decisions", PlannerDecision, ("time_unix_nano", "span_id")),
    ("policy_evaluations", PolicyEvaluation, ("time_unix_nano", "span_id", "seq")),
    ("reviews", Review, ("created_at", "id")),
)


_NOTED = frozenset({"request_models", "policy_evaluations", "reviews"})


class _Exporter:
    """One export: streams the scope into staging files (`run`), for `export_bundle` to zip."""

    def __init__(
        self,
        engine: Engine,
        scope: Scope,
        staging: Path,
        key: Ed25519PrivateKey,
        progress: Progress | None,
        prove_from: Sequence[int],
        part_events: int = layout.PART_EVENTS,
    ) -> None:
        self.engine = engine
        self.scope = scope
        self.staging = staging
        self.key = key
        self.progress = progress
        self.prove_from = prove_from
        self.part_events = part_events
        self.unlinked = 0  # requests written without a ledger event
        self.since_ns = to_unix_nano(scope.since) if scope.since else None
        self.until_ns = to_unix_nano(scope.until) if scope.until else None
        self.pseudonyms: set[str] = set()  # how the ledger names the scope's subject
        self.covered: set[str] = set()
        self.erased: set[str] = set()  # pseudonyms an `erasure` event names
        self.policy_sets: list[Any] = []
        self.sinks: dict[str, TableSink] = {}
        self.empty: set[str] = set()  # tables without a row of the project: never queried
        self.proof_runs: list[tuple[int, int]] = []
        self._kinds: dict[str, bytes] = {}
        self._project_part = b',"project":' + jcs.utf8(encode_basestring(scope.project)) + (
            b',"seq":'
        )

    def run(self) -> Facts:
        with read_connection(self.engine) as conn:
            found = conn.execute(select(Project.id).where(Project.name == self.scope.project))
            project_id = found.scalar_one_or_none()
        if project_id is None:
            raise NotFound(f"no project {self.scope.project!r}; see `warden project list`")
        self.project_id = int(project_id)
        self.log = _prepare_log(self.engine, self.project_id, self.scope.project, self.key)
        anchor = self.log.anchor
        with read_connection(self.engine) as conn:
            if conn.dialect.name == "postgresql":  # one snapshot for the whole export
                conn.execution_options(isolation_level="REPEATABLE READ")
            self.conn = conn
            if self.scope.subject is not None:
                self.pseudonyms = self._pseudonyms(self.scope.subject)
            governance = self._governance_events()
            first_event = self._first_event_time()
            full = not self.scope.filtered and (
                self.scope.since is None or first_event is None or first_event >= self.scope.since
            )
            mode = layout.FULL if full else layout.PARTIAL
            self.facts = Facts(self.scope, mode, anchor, self.project_id)
            self.facts.policy_sets = [
                {"seq": e.seq, "created_at": chain.format_time(e.created_at), "payload": e.payload}
                for e in self.policy_sets
            ]
            self._open_sinks()
            self.events_out = PartWriter(self.staging, layout.events_part)
            if full:
                self._stream(1, anchor.tree_size, full=True, governance=[])
            else:
                lo, hi = self._request_event_window()
                self._stream(lo, hi, full=False, governance=governance)
            self._requests_without_events(first_event)
            self._model_versions()
            for table, sink in self.sinks.items():
                self.facts.files.extend(sink.close())
                self.facts.counts[table] = sink.count
            self._drift_reports()
            self._retention(first_event)
        self.facts.heads_in_range = [
            h for h in [*self.log.earlier, anchor] if self._in_period(h.signed_at)
        ]
        self.facts.earlier_heads = len(self.log.earlier)
        self._ledger_files()
        return self.facts

    def _first_event_time(self) -> datetime | None:
        first: datetime | None = self.conn.execute(
            select(AuditEvent.created_at).where(
                AuditEvent.project_id == self.project_id, AuditEvent.seq == 1
            )
        ).scalar_one_or_none()
        return first

    def _open_sinks(self) -> None:
        columns = table_columns(Request, raw_json=True)
        self._request_columns = selected(Request, columns)
        extra = [Column("input", "str"), Column("erased", "bool"), Column("ledger", "rawjson")]
        self.sinks["requests"] = TableSink(
            self.staging, "requests", [*columns, *extra], layout.requests_part
        )
        for table, model, _ in _RELATED:
            self.sinks[table] = TableSink(self.staging, table, table_columns(model, raw_json=True))
            has_rows = self.conn.execute(
                select(model.id).where(model.project_id == self.project_id).limit(1)
            ).first()
            if has_rows is None:
                self.empty.add(table)

    # -- selection

    def _in_period(self, moment: datetime) -> bool:
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

    def _governance_events(self) -> list[Any]:
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
                AuditEvent.seq <= self.log.anchor.tree_size,
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
                elif self._in_period(event.created_at):
                    self.policy_sets.append(event)
                    picked.append(event)
            elif event.kind == layout.ERASURE_KIND:
                if self.scope.subject is None or erased in self.pseudonyms:
                    picked.append(event)
            elif self._in_period(event.created_at) and self.scope.subject is None:
                picked.append(event)
        if in_force_before is not None:
            self.policy_sets.insert(0, in_force_before)
            picked.append(in_force_before)
        picked.sort(key=lambda e: e.seq)
        return picked

    def _scope_conditions(self) -> list[Any]:
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

    def _request_event_window(self) -> tuple[int, int]:
        """The seq range where the ledger events of the requests in scope can be."""
        low, high = self.conn.execute(
            select(func.min(Request.ingested_at), func.max(Request.ingested_at)).where(
                *self._scope_conditions()
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
                AuditEvent.seq <= self.log.anchor.tree_size,
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

    # -- streaming the ledger, and the requests it names

    def _events(self, lo: int, hi: int, requests_only: bool) -> Iterator[Sequence[Any]]:
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

    def _canonical(self, row: Any) -> tuple[bytes, bytes]:
        """(the canonical bytes of a stored event, of its payload), checked against its hash.

        The ledger stores a payload as its canonical JSON, so on SQLite the stored text is
        used as it is; a database that reformats JSON (PostgreSQL's JSONB) costs a re-encoding.
        """
        prev, stored = bytes(row.prev_hash), bytes(row.hash)
        kind = self._kinds.get(row.kind)
        if kind is None:
            kind = self._kinds[row.kind] = jcs.utf8(encode_basestring(row.kind))
        head = b'{"created_at":"' + utc_text(row.created_at).encode() + b'","kind":' + kind
        tail = self._project_part + str(row.seq).encode() + b"}"
        body = row.payload_text.encode("utf-8")
        canonical = head + b',"payload":' + body + tail
        if _sha256(prev + canonical).digest() == stored:
            return canonical, body
        try:
            body = fastjcs.dumps(orjson.loads(body))
        except (ValueError, orjson.JSONDecodeError) as error:
            raise LedgerMismatch(f"ledger event {row.seq} has no canonical form: {error}") from None
        canonical = head + b',"payload":' + body + tail
        if _sha256(prev + canonical).digest() != stored:
            raise LedgerMismatch(
                f"ledger event {row.seq} does not hash to its stored hash: it was changed "
                "after it was written; run `warden audit verify`"
            )
        return canonical, body

    def _write_event(self, row: Any, canonical: bytes) -> bytes:
        """One line of the ledger's parts, and the run it extends; returns the reference a
        request record names it by. A full part starts the next, and the next requests part
        with it."""
        if self.events_out.lines == self.part_events:
            self.events_out.next_part()
            self.sinks["requests"].next_part()
        event_hash = bytes(row.hash)
        self.events_out.write_line(layout.event_line(canonical, event_hash, bytes(row.prev_hash)))
        facts = self.facts
        facts.events += 1
        if facts.first_seq is None:
            facts.first_seq = row.seq
        facts.last_seq = row.seq
        if row.kind != layout.REQUEST_KIND:
            facts.governance[row.kind] += 1
        if facts.mode == layout.PARTIAL:
            runs = self.proof_runs
            if runs and runs[-1][1] == row.seq - 1:
                runs[-1] = (runs[-1][0], row.seq)
            else:
                runs.append((row.seq, row.seq))
        return layout.ledger_reference(row.seq, event_hash)

    def _stream(self, lo: int, hi: int, *, full: bool, governance: list[Any]) -> None:
        total = max(hi - lo + 1, 0)
        done = 0
        pending = iter(governance)
        waiting = next(pending, None)
        prev = chain.GENESIS
        for part in self._events(lo, hi, requests_only=not full) if total else ():
            matched = self._match(part)
            traces = [matched[r.seq].trace_id for r in part if r.seq in matched]
            inputs = self._input_states(traces)
            for row in part:
                while waiting is not None and waiting.seq < row.seq:
                    self._write_event(waiting, self._canonical(waiting)[0])
                    waiting = next(pending, None)
                request = matched.get(row.seq)
                if full:
                    if bytes(row.prev_hash) != prev:
                        raise LedgerMismatch(
                            f"ledger event {row.seq} does not link to the event before it; "
                            "run `warden audit verify`"
                        )
                    prev = bytes(row.hash)
                if full or request is not None:
                    reference = self._write_event(row, self._canonical(row)[0])
                    self.facts.chain_checked += full
                if request is not None:
                    state = inputs.get(request.trace_id, "absent")
                    self._write_request(request, (row, reference), state)
            self._write_related(traces)
            done += len(part)
            if self.progress is not None:
                self.progress(done, total)
        while waiting is not None:
            self._write_event(waiting, self._canonical(waiting)[0])
            waiting = next(pending, None)

    def _match(self, part: Sequence[Any]) -> dict[int, Any]:
        """The requests in scope among a chunk's request events, by event seq."""
        by_trace: dict[str, Any] = {}
        covered = self.covered
        for row in part:
            trace_id = row.trace_id
            if row.kind == layout.REQUEST_KIND and trace_id and trace_id not in covered:
                by_trace[trace_id] = row
        if not by_trace:
            return {}
        ids = list(by_trace)
        requests = self.conn.execute(
            select(*self._request_columns).where(
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

    def _requests_without_events(self, ledger_start: datetime | None) -> None:
        """Requests in scope stored before the ledger began: exported with `ledger` null.

        Those stored since, without an event up to the anchor (newer than the anchor, or
        missing from the ledger), are counted, not exported.
        """
        cutoff = self.log.anchor.signed_at
        conditions = [*self._scope_conditions(), Request.ingested_at <= cutoff]
        if self.scope.subject is not None:
            conditions.append(Request.subject == self.scope.subject)
        in_scope = self.conn.execute(select(func.count()).where(*conditions)).scalar_one()
        if self.scope.subject is None and in_scope <= len(self.covered):
            return
        query = (
            select(Request.trace_id, Request.ingested_at)
            .where(*conditions)
            .order_by(Request.start_time_unix_nano, Request.id)
        )
        result = self.conn.execution_options(yield_per=CHUNK * 10).execute(query)
        for part in result.partitions():
            fresh = []
            for trace_id, ingested_at in part:
                if trace_id in self.covered:
                    continue
                if ledger_start is None or ingested_at < ledger_start:
                    fresh.append(trace_id)
                else:
                    self.facts.left_out += 1
            if not fresh:
                continue
            rows = self.conn.execute(
                select(*self._request_columns)
                .where(Request.project_id == self.project_id, Request.trace_id.in_(fresh))
                .order_by(Request.start_time_unix_nano, Request.id)
            ).all()
            inputs = self._input_states([r.trace_id for r in rows])
            for request in rows:
                self._write_request(request, None, inputs.get(request.trace_id, "absent"))
                self.facts.uncovered += 1
            self._write_related([r.trace_id for r in rows])

    # -- writing records

    def _input_states(self, trace_ids: list[str]) -> dict[str, str]:
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

    def _write_request(
        self, request: Any, event: tuple[Any, bytes] | None, input_state: str
    ) -> None:
        """One request record; `event` is its ledger row and the reference the record ends
        with (`"ledger": {"hash": ..., "seq": ...}`). Records without an event go to the
        requests parts after the ledger's."""
        if event is None:
            if self.unlinked % self.part_events == 0:
                self.sinks["requests"].next_part()
            self.unlinked += 1
        self.covered.add(request.trace_id)
        erased = event is not None and event[0].subject in self.erased
        self.sinks["requests"].add((*request, input_state, erased, event and event[1]))
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

    def _write_related(self, trace_ids: list[str]) -> None:
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

    def _drift_reports(self) -> None:
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

    def _retention(self, ledger_start: datetime | None) -> None:
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

    # -- the ledger files: proofs and heads

    def _ledger_files(self) -> None:
        facts = self.facts
        facts.files.extend(self.events_out.close())
        facts.counts["ledger_events"] = facts.events
        anchor = self.log.anchor
        tree = self.log.tree
        if facts.mode == layout.PARTIAL:
            out = HashingWriter(self.staging, layout.PROOFS)
            for first, last in self.proof_runs:
                path = tree.inclusion_proof(last - 1, anchor.tree_size)
                line = {
                    "first_seq": first,
                    "last_seq": last,
                    "leaf_index": last - 1,
                    "tree_size": anchor.tree_size,
                    "path": [p.hex() for p in path],
                }
                out.write_line(orjson.dumps(line, option=_SORTED))
            facts.files.append(out.close(len(self.proof_runs)))
            facts.counts["proofs"] = len(self.proof_runs)
        signed: dict[int, TreeHead | None] = {h.tree_size: h for h in self.log.earlier}
        for size in self.prove_from:
            if 0 < size < anchor.tree_size:
                signed.setdefault(size, None)
        out = HashingWriter(self.staging, layout.HEADS)
        for size in sorted(s for s in signed if s > 0):
            head = signed[size]
            line = {
                "head": heads.head_to_json(head) if head is not None else None,
                "tree_size": size,
                "root_hash": tree.root(size).hex(),
                "consistency": [p.hex() for p in tree.consistency_proof(size, anchor.tree_size)],
            }
            out.write_line(orjson.dumps(line, option=_SORTED))
        facts.files.append(out.close(out.lines))
        facts.counts["heads"] = out.lines


def _build_manifest(facts: Facts, policy_hashes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format": layout.FORMAT,
        "created_at": facts.created_at,
        "software": {"name": "warden", "version": software_version()},
        "key_id": facts.key_id,
        "scope": {**facts.scope.to_json(), "mode": facts.mode},
        "ledger": {
            "first_seq": facts.first_seq,
            "last_seq": facts.last_seq,
            "events": facts.events,
            "anchor": heads.head_to_json(facts.anchor),
            "heads_in_range": [heads.head_to_json(h) for h in facts.heads_in_range],
            "earlier_heads": facts.earlier_heads,
            "chain_checked_at_export": facts.chain_checked,
        },
        "counts": {
            **facts.counts,
            "erased_requests": facts.erased,
            "requests_without_ledger_event": facts.uncovered,
            "requests_left_out": facts.left_out,
        },
        "policy_sets": facts.policy_sets,
        "policies": policy_hashes,
        "lineage": facts.lineage,
        "files": {f.path: f.to_json() for f in sorted(facts.files, key=lambda f: f.path)},
    }


_STORED_SUFFIXES = (".parquet", ".pdf")


def export_bundle(
    engine: Engine,
    scope: Scope,
    out: Path,
    key: Ed25519PrivateKey,
    *,
    progress: Progress | None = None,
    prove_from: Iterable[int] = (),
    compresslevel: int | None = 1,
    part_events: int = layout.PART_EVENTS,
) -> ExportResult:
    """Write the bundle of `scope` to `out` (a zip), signed with `key`.

    `prove_from` adds consistency proofs from these tree sizes to the anchor, besides those
    from every stored head. `compresslevel` None stores the JSON files uncompressed (bigger,
    faster to verify); otherwise deflate at that level. `part_events`: events per part of
    the ledger (the format's `layout.PART_EVENTS`; smaller only to test bundles of many parts).

    >>> result = export_bundle(engine, Scope("shop"), Path("shop.zip"), key)  # doctest: +SKIP
    """
    from app.audit import report

    started = time.perf_counter()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        exporter = _Exporter(
            engine, scope, staging, key, progress, list(prove_from), part_events
        )
        facts = exporter.run()
        facts.created_at = chain.format_time(datetime.now(UTC))
        facts.key_id = heads.key_id(key.public_key())
        html = report.render_html(facts)
        (staging / layout.REPORT_HTML).write_text(html, encoding="utf-8")
        facts.files.append(hash_file(staging, layout.REPORT_HTML))
        (staging / layout.REPORT_PDF).write_bytes(report.render_pdf(facts))
        facts.files.append(hash_file(staging, layout.REPORT_PDF))
        manifest = _build_manifest(facts, facts.policy_rows())
        manifest_bytes = orjson.dumps(
            manifest, option=orjson.OPT_INDENT_2 | _SORTED | orjson.OPT_APPEND_NEWLINE
        )
        partial = out.with_name(out.name + ".partial")
        with zipfile.ZipFile(partial, "w", allowZip64=True) as bundle:
            bundle.writestr(layout.MANIFEST, manifest_bytes, zipfile.ZIP_DEFLATED)
            bundle.writestr(layout.SIGNATURE, heads.sign_bytes(key, manifest_bytes))
            bundle.writestr(layout.PUBLIC_KEY, heads.public_key_pem(key))
            for info in sorted(facts.files, key=lambda f: f.path):
                stored = compresslevel is None or info.path.endswith(_STORED_SUFFIXES)
                bundle.write(
                    staging / info.path,
                    info.path,
                    zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED,
                    None if stored else compresslevel,
                )
        partial.replace(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    whole = hash_file(out.parent, out.name)
    return ExportResult(
        path=out,
        manifest=manifest,
        manifest_bytes=manifest_bytes,
        report_html=html,
        facts=facts,
        seconds=time.perf_counter() - started,
        bytes=whole.bytes,
        sha256=whole.sha256,
    )
