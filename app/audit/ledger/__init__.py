"""The live ledger: appending events to a project's hash chain, and reading them back.

Events are appended inside the caller's write transaction, so an event exists exactly when
the change it records was committed. A project's events are written by one writer at a time,
in seq order: every append locks the project's row of `audit_heads` (SELECT ... FOR UPDATE on
PostgreSQL; on SQLite the write transaction is exclusive already), reads the last seq and
hash there, and leaves the new ones behind, with the state of an incremental Merkle
accumulator, so that signing a head never rereads the log. Take the lock as late as the
transaction allows: on PostgreSQL it is held until commit.

    with write_transaction(engine) as conn:
        conn.execute(...)                                        # the change
        append(conn, project_id, "shop", "key.revoked", {"key_id": "wdn_3fKq81Zx"})

The bytes of an event, its hash and the Merkle tree are defined in docs/audit.md and
`app.audit.chain`; the event kinds and their payloads in docs/audit.md, "The live ledger".
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, Table, Text, cast, select, update

from app.audit import chain, fastjcs, jcs
from app.audit.ledger.read_models import EventPage, LedgerEvent
from app.audit.merkle import MerkleAccumulator, leaf_hash
from app.errors import BadRequest, NotFound
from app.store.bulk import copy_insert
from app.store.dialect import DriverSQL, driver_datetime, insert_on_conflict, is_postgresql
from app.store.engine import read_connection, write_transaction
from app.store.tables import AuditEvent, AuditHead, Project
from policies import PolicySet

# The kinds Warden appends; docs/audit.md describes each payload.
REQUEST = "request"
KEY_CREATED = "key.created"
KEY_REVOKED = "key.revoked"
POLICY_SET_CHANGED = "policy_set.changed"
MODEL_PROMOTED = "model.promoted"
MODEL_PROMOTION_REFUSED = "model.promotion_refused"
MODEL_ROLLED_BACK = "model.rolled_back"
REVIEW_APPROVED = "review.approved"
REVIEW_REJECTED = "review.rejected"
DRIFT_VERDICT = "drift.verdict"
EXPORT_PRODUCED = "export.produced"
ERASURE = "erasure"
RETENTION_CHANGED = "retention.changed"
RETENTION_APPLIED = "retention.applied"
LEGAL_HOLD_PLACED = "legal_hold.placed"
LEGAL_HOLD_RELEASED = "legal_hold.released"
SCORE_RECORDED = "score.recorded"
SCORE_CONFIG_SET = "score_config.set"
SCORE_CONFIG_DELETED = "score_config.deleted"
EXPERIMENT_CREATED = "experiment.created"
EXPERIMENT_STOPPED = "experiment.stopped"

EVENTS: Table = AuditEvent.__table__  # type: ignore[assignment]
HEADS: Table = AuditHead.__table__  # type: ignore[assignment]
EMPTY_STATE: dict[str, Any] = {"size": 0, "roots": []}


@dataclass(frozen=True, slots=True)
class AppendedEvent:
    """An event as stored: the five canonical fields plus its chain hashes."""

    project_id: int
    project: str
    seq: int
    kind: str
    created_at: datetime
    payload: dict[str, Any]
    prev_hash: bytes
    hash: bytes

    def event(self) -> dict[str, Any]:
        """The canonical event (`chain.canonical` takes it)."""
        return {
            "seq": self.seq,
            "project": self.project,
            "kind": self.kind,
            "created_at": chain.format_time(self.created_at),
            "payload": self.payload,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.event(), "prev_hash": self.prev_hash.hex(), "hash": self.hash.hex()}


@dataclass(frozen=True, slots=True)
class Head:
    """A project's `audit_heads` row: where its chain stands."""

    project_id: int
    project: str
    seq: int
    last_hash: bytes
    merkle_state: dict[str, Any]
    policy_set_hash: str | None

    def accumulator(self) -> MerkleAccumulator:
        return accumulator(self.merkle_state)


def accumulator(state: Mapping[str, Any]) -> MerkleAccumulator:
    """The Merkle accumulator a stored `merkle_state` describes."""
    return MerkleAccumulator.restore(
        int(state["size"]), [bytes.fromhex(r) for r in state["roots"]]
    )


def merkle_state(acc: MerkleAccumulator) -> dict[str, Any]:
    size, roots = acc.state()
    return {"size": size, "roots": [r.hex() for r in roots]}


_HEAD_SQL = (
    "SELECT h.seq, h.last_hash, h.merkle_state, h.policy_set_hash, p.name "
    "FROM audit_heads h JOIN projects p ON p.id = h.project_id WHERE h.project_id = {mark}"
)
_READ_HEAD = DriverSQL.of(_HEAD_SQL)
_LOCK_HEAD = DriverSQL.of(_HEAD_SQL + " FOR UPDATE OF h")  # PostgreSQL only
_UPDATE_HEAD = DriverSQL.of(
    "UPDATE audit_heads SET seq = {mark}, last_hash = {mark}, merkle_state = {mark} "
    "WHERE project_id = {mark}"
)
_EVENT_COLUMNS = ("project_id", "seq", "kind", "payload", "prev_hash", "hash", "created_at")
_INSERT_EVENTS = DriverSQL.of(
    "INSERT INTO audit_events (project_id, seq, kind, payload, prev_hash, hash, created_at) "
    "VALUES ({mark}, {mark}, {mark}, {mark}, {mark}, {mark}, {mark})"
)


def _head(project_id: int, row: Any) -> Head:
    state = row[2]
    if isinstance(state, str | bytes):
        state = orjson.loads(state)
    return Head(project_id, row[4], int(row[0]), bytes(row[1]), state, row[3])


def lock_head(conn: Connection, project_id: int) -> Head:
    """The project's head row, locked until the transaction ends (made on first use)."""
    sql = (_LOCK_HEAD if is_postgresql(conn) else _READ_HEAD).text(conn)
    row = conn.exec_driver_sql(sql, (project_id,)).first()
    if row is None:
        if conn.execute(select(Project.id).where(Project.id == project_id)).first() is None:
            raise NotFound(f"no project with id {project_id}")
        conn.execute(
            insert_on_conflict(conn, HEADS, ["project_id"]).values(
                project_id=project_id, seq=0, last_hash=chain.GENESIS, merkle_state=EMPTY_STATE
            )
        )
        row = conn.exec_driver_sql(sql, (project_id,)).one()
    return _head(project_id, row)


def read_head(conn: Connection, project_id: int) -> Head | None:
    """The project's head row without locking it; None before its first event."""
    row = conn.exec_driver_sql(_READ_HEAD.text(conn), (project_id,)).first()
    return None if row is None else _head(project_id, row)


def append(
    conn: Connection,
    project_id: int,
    project_name: str | None,
    kind: str,
    payload: Mapping[str, Any],
    created_at: datetime | None = None,
) -> AppendedEvent:
    """Append one event to the project's chain inside the caller's write transaction.

    `project_name` is checked against the project's name (None: looked up).

    >>> with write_transaction(engine) as conn:
    ...     event = append(conn, 1, "shop", "key.revoked", {"key_id": "wdn_3fKq81Zx"})
    >>> event.seq, len(event.hash)
    (1, 32)
    """
    return append_many(conn, project_id, project_name, [(kind, payload)], created_at)[0]


def append_many(
    conn: Connection,
    project_id: int,
    project_name: str | None,
    events: Sequence[tuple[str, Mapping[str, Any]]],
    created_at: datetime | None = None,
    *,
    trusted: bool = False,
) -> list[AppendedEvent]:
    """Append (kind, payload) events in order: one lock, one executemany, one head update.

    Payloads are stored as their canonical JSON, so what is read back is what was hashed. A
    value JSON cannot carry exactly (NaN, an integer beyond 2^53, a lone surrogate) is made
    representable first (`representable`); `trusted` skips that pass for payloads built of
    strings, small ints and finite floats (the ingest path), which are still checked.
    """
    if not events:
        return []
    when = (created_at or datetime.now(UTC)).astimezone(UTC)
    stamp = chain.format_time(when)
    # The payloads' canonical JSON first: the head's lock (held until commit, and every
    # writer of the project queues on it) is then held only for the chaining.
    encoded: list[tuple[str, dict[str, Any], bytes]] = []
    for kind, raw in events:
        if not kind or not isinstance(kind, str):
            raise ValueError(f"an event needs a kind, not {kind!r}")
        payload = dict(raw) if trusted else representable(raw)
        try:
            body = fastjcs.dumps(payload)
        except ValueError:
            payload = representable(payload)
            body = fastjcs.dumps(payload)
        encoded.append((kind, payload, body))
    head = lock_head(conn, project_id)
    if project_name is not None and project_name != head.project:
        raise ValueError(f"project {project_id} is named {head.project!r}, not {project_name!r}")
    acc = head.accumulator()
    prev, seq = head.last_hash, head.seq
    # The fixed parts of the canonical event (chain.canonical writes the same bytes).
    opening = b'{"created_at":' + jcs.utf8(encode_basestring(stamp)) + b',"kind":'
    closing = b',"project":' + jcs.utf8(encode_basestring(head.project)) + b',"seq":'
    stored_at = driver_datetime(conn, when)
    params: list[tuple[Any, ...]] = []
    appended: list[AppendedEvent] = []
    sha256 = hashlib.sha256
    kinds: dict[str, bytes] = {}
    for kind, payload, body in encoded:
        seq += 1
        kind_json = kinds.get(kind)
        if kind_json is None:
            kind_json = kinds[kind] = jcs.utf8(encode_basestring(kind))
        canonical = b"".join(
            (opening, kind_json, b',"payload":', body, closing, str(seq).encode(), b"}")
        )
        digest = sha256(prev + canonical).digest()
        acc.append(leaf_hash(digest))
        params.append((project_id, seq, kind, body.decode(), prev, digest, stored_at))
        appended.append(
            AppendedEvent(project_id, head.project, seq, kind, when, payload, prev, digest)
        )
        prev = digest
    if is_postgresql(conn):
        # The keys are new by construction (numbered under the head's lock): COPY them in.
        copy_insert(conn, "audit_events", _EVENT_COLUMNS, params)
    else:
        conn.exec_driver_sql(_INSERT_EVENTS.text(conn), params)
    conn.exec_driver_sql(
        _UPDATE_HEAD.text(conn),
        (seq, prev, orjson.dumps(merkle_state(acc)).decode(), project_id),
    )
    return appended


_SAFE = jcs.MAX_SAFE_INTEGER


def representable(value: Any) -> Any:
    """`value` as JSON can store and give back exactly, for canonical hashing.

    Non-finite floats become null; integers (and integral floats) beyond ±(2^53 - 1) become
    strings; lone surrogates and NUL characters (PostgreSQL's JSONB refuses NUL) become
    U+FFFD; keys become strings; tuples become lists; anything else becomes its `str`.

    >>> representable({"a": float("nan"), "b": 2**60, "c": (1, 2.5)})
    {'a': None, 'b': '1152921504606846976', 'c': [1, 2.5]}
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value) if -_SAFE <= value <= _SAFE else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer() and abs(value) > _SAFE:
            return str(int(value))
        return float(value)
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, Mapping):
        return {_text(str(k)): representable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [representable(v) for v in value]
    return _text(str(value))


def _text(value: str) -> str:
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        value = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    return value


# -- reading ---------------------------------------------------------------------------------


def iter_events(
    conn: Connection, project_id: int, from_seq: int = 1, to_seq: int | None = None,
    chunk: int = 5000, raw_payload: bool = False,
) -> Iterator[Any]:  # fmt: skip
    """`audit_events` rows of a project in seq order, read `chunk` at a time.

    With `raw_payload` the payload comes as the database's JSON text, unparsed (a verifier
    parses it itself, so a mangled row is reported rather than raised)."""
    after = from_seq - 1
    payload = cast(EVENTS.c.payload, Text).label("payload") if raw_payload else EVENTS.c.payload
    while True:
        query = (
            select(
                EVENTS.c.seq, EVENTS.c.kind, payload, EVENTS.c.created_at,
                EVENTS.c.prev_hash, EVENTS.c.hash,
            )
            .where(EVENTS.c.project_id == project_id, EVENTS.c.seq > after)
            .order_by(EVENTS.c.seq)
            .limit(chunk)
        )
        if to_seq is not None:
            query = query.where(EVENTS.c.seq <= to_seq)
        rows = conn.execute(query).all()
        yield from rows
        if len(rows) < chunk:
            return
        after = int(rows[-1].seq)


def _ledger_event(project: str, row: Any) -> LedgerEvent:
    """An `audit_events` row as the API shows it: the canonical event and its hashes."""
    return LedgerEvent(
        seq=int(row.seq),
        project=project,
        kind=row.kind,
        created_at=chain.format_time(row.created_at),
        payload=row.payload,
        prev_hash=bytes(row.prev_hash).hex(),
        hash=bytes(row.hash).hex(),
    )


def list_events(
    engine: Engine, project_id: int, from_seq: int = 1, limit: int = 100
) -> EventPage:
    """Events from `from_seq` on, `limit` at most, with `next_from_seq` to page on."""
    if from_seq < 1:
        raise BadRequest("from_seq counts from 1")
    if not 1 <= limit <= 1000:
        raise BadRequest("limit must be between 1 and 1000")
    with read_connection(engine) as conn:
        head = read_head(conn, project_id)
        rows = list(iter_events(conn, project_id, from_seq, from_seq + limit - 1, chunk=limit))
        name = head.project if head else _project_name(conn, project_id)
    items = [_ledger_event(name, r) for r in rows]
    size = head.seq if head else 0
    following = from_seq + len(items)
    return EventPage(
        items=items,
        tree_size=size,
        next_from_seq=following if following <= size and items else None,
    )


def _project_name(conn: Connection, project_id: int) -> str:
    name = conn.execute(select(Project.name).where(Project.id == project_id)).scalar_one_or_none()
    if name is None:
        raise NotFound(f"no project with id {project_id}")
    return str(name)


# -- governance events ---------------------------------------------------------------------


def _within(
    conn_or_engine: Connection | Engine,
    project_id: int,
    project: str | None,
    kind: str,
    payload: Mapping[str, Any],
) -> AppendedEvent:
    if isinstance(conn_or_engine, Connection):
        return append(conn_or_engine, project_id, project, kind, payload)
    with write_transaction(conn_or_engine) as conn:
        return append(conn, project_id, project, kind, payload)


def record_drift(
    conn_or_engine: Connection | Engine,
    project_id: int,
    project: str | None,
    summary: Mapping[str, Any],
) -> AppendedEvent:
    """Append a `drift.verdict` event for one judged model version.

    `summary` is the job's result for the version (`VersionResult.to_json()`); the event
    keeps its verdicts, windows' sizes, policy outcomes and rollbacks, and the SHA-256 of the
    whole summary (sorted-key JSON) so the stored report can be matched to it. Pass the
    connection of the transaction that stores the report, or an engine (its own transaction).
    """
    reports = [
        {
            "kind": r.get("kind"),
            "verdict": r.get("verdict"),
            "share_drifted": r.get("share_drifted"),
            "requests": (r.get("current") or {}).get("requests"),
        }
        for r in summary.get("reports", [])
        if isinstance(r, Mapping)
    ]
    policies = {
        str(kind): [
            {k: v.get(k) for k in ("policy_id", "version", "effect", "fired")}
            for v in verdicts
            if isinstance(v, Mapping)
        ]
        for kind, verdicts in (summary.get("policies") or {}).items()
        if isinstance(verdicts, list)
    }
    payload = {
        "job_id": summary.get("job_id"),
        "model": {"name": summary.get("model_name"), "version": summary.get("model_version")},
        "verdict": summary.get("verdict"),
        "reports": reports,
        "policies": policies,
        "rollbacks": list(summary.get("rollbacks") or []),
        "mlflow_run_id": summary.get("mlflow_run_id"),
        "summary_sha256": hashlib.sha256(
            orjson.dumps(representable(summary), option=orjson.OPT_SORT_KEYS)
        ).hexdigest(),
    }
    return _within(conn_or_engine, project_id, project, DRIFT_VERDICT, payload)


def record_export(
    conn_or_engine: Connection | Engine,
    project_id: int,
    project: str | None,
    summary: Mapping[str, Any],
) -> AppendedEvent:
    """Append an `export.produced` event; `summary` is the payload (e.g. the bundle's digest,
    the range of seqs and the signed head it covers, who asked)."""
    return _within(conn_or_engine, project_id, project, EXPORT_PRODUCED, summary)


def record_policy_set(engine: Engine, policy_set: PolicySet) -> int:
    """Append `policy_set.changed` to every project whose ledger last recorded another policy
    set (or none); returns how many did. Called when the service starts (and by the signer,
    for projects made since)."""
    set_hash = policy_set.hash
    policies = [
        {"id": p.id, "version": p.version, "hash": p.hash}
        for p in sorted(policy_set.policies, key=lambda p: p.id)
    ]
    with read_connection(engine) as conn:
        stale = [
            int(pid)
            for pid, recorded in conn.execute(
                select(Project.id, HEADS.c.policy_set_hash).outerjoin(
                    HEADS, HEADS.c.project_id == Project.id
                )
            )
            if recorded != set_hash
        ]
    changed = 0
    for project_id in stale:
        with write_transaction(engine) as conn:
            try:
                head = lock_head(conn, project_id)
            except NotFound:
                continue  # deleted meanwhile
            if head.policy_set_hash == set_hash:
                continue  # another worker recorded it first
            payload = {"old": head.policy_set_hash, "new": set_hash, "policies": policies}
            append(conn, project_id, None, POLICY_SET_CHANGED, payload)
            conn.execute(
                update(HEADS)
                .where(HEADS.c.project_id == project_id)
                .values(policy_set_hash=set_hash)
            )
            changed += 1
    return changed
