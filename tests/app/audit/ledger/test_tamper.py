"""Tampering with the live ledger is always detected; an untouched ledger always verifies.

Seeded, randomised trials of each kind of tampering an attacker with database access can
do: change a byte of an event, delete one, reorder, truncate, insert (with and without
re-hashing everything after it), forge a head's signature, substitute a head signed by
another key. 1,000 trials of each kind run on rows read out of a real ledger and fed to
`verify_records`, the function `warden audit verify` runs; more run through the database
itself (SQLite and PostgreSQL), the attacker dropping the append-only triggers first.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Engine

from app.audit import chain, heads, ledger
from app.audit.heads import TreeHead
from app.audit.ledger import checkpoints
from app.audit.ledger.verify import EventRow, Failure, trusted_keys, verify_project, verify_records
from app.config import Settings
from app.store import schema
from app.store.engine import create_db_engine, write_transaction
from app.tenancy import projects
from collectors import conventions as wire
from tests import otlp
from tests.app.audit.conftest import ingest, tampering
from tests.conftest import TEST_SECRET

PROJECT = "shop"
TRIALS = 1000
DB_TRIALS = 60
HEAD_SIZES = (6, 12, 16)
CHAIN = {Failure.HASH_MISMATCH, Failure.BROKEN_LINK, Failure.GAP, Failure.REORDERED,
         Failure.MALFORMED}  # fmt: skip
OTHER_KEY = heads.generate_key()
PURE_KEY: list[Ed25519PrivateKey] = []  # the key that signed the module's ledger


def build_ledger(engine: Engine, key: Ed25519PrivateKey) -> int:
    """16 events of several kinds (keys, requests with and without subjects and retained
    inputs, drift, export, unicode and floats), heads signed at 6, 12 and 16."""
    projects.create_project(engine, PROJECT)
    pid = projects.project_id(engine, PROJECT)
    ids = otlp.Ids(11)
    retained = {wire.REQUEST_SUBJECT: "u-1", wire.REQUEST_INPUT: '{"text": "a room"}'}
    steps: list[Callable[[], object]] = [
        lambda: projects.create_key(engine, b"s", PROJECT, ["ingest"], "pods ü"),
        lambda: ingest(engine, pid, otlp.hybrid_trace(ids)),
        lambda: ingest(engine, pid, otlp.hybrid_trace(ids, **retained)),
        lambda: ledger.record_export(engine, pid, PROJECT, {"note": "日本 😀", "ratio": 0.125}),
        lambda: ingest(engine, pid, [*otlp.hybrid_trace(ids), *otlp.hybrid_trace(ids)]),
    ]
    sizes = list(HEAD_SIZES)
    step = 0
    while True:
        size = _size(engine, pid)
        if sizes and size >= sizes[0]:
            assert size == sizes.pop(0), "the steps must land on the head sizes"
            checkpoints.sign_heads(engine, key, pid)
            if not sizes:
                return pid
        if step < len(steps):
            steps[step]()
        else:
            with write_transaction(engine) as conn:
                ledger.append(conn, pid, PROJECT, "test.filler",
                              {"i": step, "x": step / 7, "s": "ö" * (step % 3)})  # fmt: skip
        step += 1


def _size(engine: Engine, pid: int) -> int:
    with engine.connect() as conn:
        head = ledger.read_head(conn, pid)
    return head.seq if head else 0


@dataclasses.dataclass
class Ledger:
    pid: int
    rows: list[EventRow]
    heads: list[TreeHead]
    head_row: ledger.Head
    keys: dict[str, Any]


def read_ledger(engine: Engine, pid: int, key: Ed25519PrivateKey) -> Ledger:
    with engine.connect() as conn:
        rows = [
            EventRow(r.seq, r.kind, r.created_at, r.payload.encode(), bytes(r.prev_hash),
                     bytes(r.hash))
            for r in ledger.iter_events(conn, pid, raw_payload=True)
        ]  # fmt: skip
        signed = checkpoints.stored_heads(conn, pid, PROJECT)
        head_row = ledger.read_head(conn, pid)
    assert head_row is not None
    return Ledger(pid, rows, signed, head_row, trusted_keys([key.public_key()]))


# -- the tampering, on rows in hand ------------------------------------------------------------


def _flip(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data))
    value = rng.choice([b for b in range(256) if b != data[i]])
    return data[:i] + bytes([value]) + data[i + 1 :]


def modify(rows: list[EventRow], heads_: list[TreeHead], rng: random.Random) -> str:
    i = rng.randrange(len(rows))
    field = rng.choice(["payload", "payload", "hash", "prev_hash", "kind"])
    row = rows[i]
    if field == "kind":
        rows[i] = dataclasses.replace(row, kind=_flip(row.kind.encode(), rng).decode("latin-1"))
    else:
        rows[i] = dataclasses.replace(row, **{field: _flip(getattr(row, field), rng)})
    return f"{field} of seq {row.seq}"


def delete(rows: list[EventRow], heads_: list[TreeHead], rng: random.Random) -> str:
    i = rng.randrange(len(rows))
    del rows[i]
    return f"deleted index {i}"


def reorder(rows: list[EventRow], heads_: list[TreeHead], rng: random.Random) -> str:
    i, j = sorted(rng.sample(range(len(rows)), 2))
    if rng.random() < 0.5:
        rows[i], rows[j] = rows[j], rows[i]
        return f"swapped {i} and {j}"
    rows.insert(j, rows.pop(i))
    return f"moved {i} to {j}"


def truncate(rows: list[EventRow], heads_: list[TreeHead], rng: random.Random) -> str:
    k = rng.randint(1, len(rows))
    del rows[-k:]
    return f"cut the last {k}"


def forged_event(seq: int, prev: bytes, rng: random.Random) -> EventRow:
    payload = {"forged": rng.randrange(10**6)}
    created = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(10**9))
    event = {"seq": seq, "project": PROJECT, "kind": "key.created", "created_at": created,
             "payload": payload}  # fmt: skip
    return EventRow(seq, "key.created", created, orjson.dumps(payload), prev,
                    chain.event_hash(prev, event))  # fmt: skip


def rehash(rows: list[EventRow], start: int) -> None:
    """Renumber and re-link every row from `start` on, as a careful attacker would."""
    prev = rows[start - 1].hash if start else chain.GENESIS
    for i in range(start, len(rows)):
        row = rows[i]
        event = {"seq": i + 1, "project": PROJECT, "kind": row.kind, "created_at": row.created_at,
                 "payload": orjson.loads(row.payload)}  # fmt: skip
        rows[i] = dataclasses.replace(
            row, seq=i + 1, prev_hash=prev, hash=chain.event_hash(prev, event)
        )
        prev = rows[i].hash


def insert_at(rows: list[EventRow], rng: random.Random, renumber: bool) -> tuple[int, str]:
    """Insert a forged event before an event every head covers; returns where, and how."""
    p = rng.randrange(len(rows))
    prev = rows[p - 1].hash if p else chain.GENESIS
    rows.insert(p, forged_event(p + 1, prev, rng))
    if rng.random() < 0.5:
        rehash(rows, p + 1)
        return p, f"inserted at {p}, everything after re-hashed"
    if renumber:
        for i in range(p + 1, len(rows)):
            rows[i] = dataclasses.replace(rows[i], seq=i + 1)
    return p, f"inserted at {p}"


def insert(rows: list[EventRow], heads_: list[TreeHead], rng: random.Random) -> str:
    return insert_at(rows, rng, renumber=rng.random() < 0.5)[1]


def forge_head(rows: list[EventRow], heads_: list[TreeHead], rng: random.Random) -> str:
    i = rng.randrange(len(heads_))
    head = heads_[i]
    what = rng.choice(["signature", "root_hash", "tree_size", "signed_at", "random"])
    if what == "signature":
        heads_[i] = dataclasses.replace(head, signature=_flip(head.signature, rng))
    elif what == "root_hash":
        heads_[i] = dataclasses.replace(head, root_hash=_flip(head.root_hash, rng))
    elif what == "tree_size":
        heads_[i] = dataclasses.replace(head, tree_size=head.tree_size + rng.choice([-1, 1]))
    elif what == "signed_at":
        heads_[i] = dataclasses.replace(
            head, signed_at=head.signed_at + timedelta(microseconds=rng.randint(1, 10**6))
        )
    else:
        heads_[i] = dataclasses.replace(head, signature=rng.randbytes(64))
    return f"{what} of the head of size {head.tree_size}"


def other_key(rows: list[EventRow], heads_: list[TreeHead], rng: random.Random) -> str:
    i = rng.randrange(len(heads_))
    head = heads_[i]
    root = head.root_hash if rng.random() < 0.5 else rng.randbytes(32)
    forged = heads.sign_head(OTHER_KEY, PROJECT, head.tree_size, root, head.signed_at)
    how = rng.choice(["own id", "claims ours", "added"])
    if how == "claims ours":
        forged = dataclasses.replace(forged, key_id=head.key_id)
    if how == "added":
        heads_.append(forged)
    else:
        heads_[i] = forged
    return f"head of size {head.tree_size} by another key ({how})"


KINDS: dict[str, tuple[Callable[..., str], set[Failure]]] = {
    "modify": (modify, CHAIN),
    "delete": (delete, {Failure.GAP, Failure.TRUNCATED}),
    "reorder": (reorder, CHAIN),
    "truncate": (truncate, {Failure.TRUNCATED}),
    "insert": (insert, CHAIN | {Failure.ROOT_MISMATCH}),
    "forge_head": (forge_head, {Failure.BAD_SIGNATURE}),
    "other_key": (other_key, {Failure.UNKNOWN_KEY, Failure.BAD_SIGNATURE}),
}


@pytest.fixture(scope="module")
def pure_ledger(tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    root: Path = tmp_path_factory.mktemp("tamper")
    settings = Settings(data_dir=root, database_url=f"sqlite:///{root / 'w.db'}",
                        secret_key=TEST_SECRET)  # fmt: skip
    engine = create_db_engine(settings)
    schema.upgrade(engine)
    key = heads.generate_key()
    PURE_KEY.append(key)
    try:
        pid = build_ledger(engine, key)
        return read_ledger(engine, pid, key)
    finally:
        engine.dispose()


def test_an_untouched_ledger_verifies(pure_ledger: Ledger) -> None:
    report = verify_records(PROJECT, pure_ledger.rows, pure_ledger.heads, pure_ledger.keys,
                            pure_ledger.head_row)  # fmt: skip
    assert report.ok, report.message
    assert (report.events, report.heads) == (16, 3)
    assert {r.kind for r in pure_ledger.rows} >= {"key.created", "request", "export.produced"}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_tampering_is_detected(pure_ledger: Ledger, kind: str) -> None:
    tamper, expected = KINDS[kind]
    for trial in range(TRIALS):
        rng = random.Random(f"{kind}-{trial}")
        rows, signed = list(pure_ledger.rows), list(pure_ledger.heads)
        what = tamper(rows, signed, rng)
        report = verify_records(PROJECT, rows, signed, pure_ledger.keys, pure_ledger.head_row)
        assert report.failure in expected, f"trial {trial} ({what}): {report}"
        assert report.message


# -- the tampering, through the database ------------------------------------------------------


def _mark(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _json_param(conn: Connection) -> str:
    return f"{_mark(conn)}::jsonb" if conn.dialect.name == "postgresql" else _mark(conn)


def db_modify(conn: Connection, lg: Ledger, rng: random.Random) -> str:
    m = _mark(conn)
    row = rng.choice(lg.rows)
    if rng.random() < 0.5:
        field = rng.choice(["hash", "prev_hash"])
        conn.exec_driver_sql(
            f"UPDATE audit_events SET {field} = {m} WHERE project_id = {m} AND seq = {m}",
            (_flip(getattr(row, field), rng), lg.pid, row.seq),
        )
        return f"{field} of seq {row.seq}"
    text = row.payload.decode()
    while True:  # a one-character change that is still JSON (PostgreSQL stores no other)
        i = rng.randrange(len(text))
        changed = text[:i] + rng.choice("0123456789abcxyz\"{}:,é ") + text[i + 1 :]
        try:
            if orjson.loads(changed) != orjson.loads(text):
                break
        except orjson.JSONDecodeError:
            if conn.dialect.name != "postgresql":
                break
    conn.exec_driver_sql(
        f"UPDATE audit_events SET payload = {_json_param(conn)} "
        f"WHERE project_id = {m} AND seq = {m}",
        (changed, lg.pid, row.seq),
    )
    return f"payload of seq {row.seq}: {changed!r}"


def db_delete(conn: Connection, lg: Ledger, rng: random.Random) -> str:
    m = _mark(conn)
    seq = rng.randint(1, len(lg.rows))
    conn.exec_driver_sql(
        f"DELETE FROM audit_events WHERE project_id = {m} AND seq = {m}", (lg.pid, seq)
    )
    return f"deleted seq {seq}"


def db_reorder(conn: Connection, lg: Ledger, rng: random.Random) -> str:
    m = _mark(conn)
    a, b = rng.sample(range(1, len(lg.rows) + 1), 2)
    update = f"UPDATE audit_events SET seq = {m} WHERE project_id = {m} AND seq = {m}"
    conn.exec_driver_sql(update, (-1, lg.pid, a))
    conn.exec_driver_sql(update, (a, lg.pid, b))
    conn.exec_driver_sql(update, (b, lg.pid, -1))
    return f"swapped seq {a} and {b}"


def db_truncate(conn: Connection, lg: Ledger, rng: random.Random) -> str:
    m = _mark(conn)
    k = rng.randint(1, len(lg.rows))
    conn.exec_driver_sql(
        f"DELETE FROM audit_events WHERE project_id = {m} AND seq > {m}",
        (lg.pid, len(lg.rows) - k),
    )
    return f"cut the last {k}"


def db_insert(conn: Connection, lg: Ledger, rng: random.Random) -> str:
    m = _mark(conn)
    rows = list(lg.rows)
    p, what = insert_at(rows, rng, renumber=True)  # seqs are unique in the table
    conn.exec_driver_sql(
        f"DELETE FROM audit_events WHERE project_id = {m} AND seq > {m}", (lg.pid, p)
    )
    for row in rows[p:]:
        conn.exec_driver_sql(
            "INSERT INTO audit_events (project_id, seq, kind, payload, prev_hash, hash, "
            f"created_at) VALUES ({m}, {m}, {m}, {_json_param(conn)}, {m}, {m}, {m})",
            (lg.pid, row.seq, row.kind, row.payload.decode(), row.prev_hash, row.hash,
             row.created_at if conn.dialect.name == "postgresql"
             else row.created_at.strftime("%Y-%m-%d %H:%M:%S.%f")),
        )  # fmt: skip
    return what


def _head_update(conn: Connection, lg: Ledger, old: TreeHead, new: TreeHead) -> None:
    m = _mark(conn)
    conn.exec_driver_sql(
        f"UPDATE audit_checkpoints SET root_hash = {m}, key_id = {m}, signature = {m}, "
        f"tree_size = {m} WHERE project_id = {m} AND tree_size = {m}",
        (new.root_hash, new.key_id, new.signature, new.tree_size, lg.pid, old.tree_size),
    )


def db_forge_head(conn: Connection, lg: Ledger, rng: random.Random) -> str:
    signed = list(lg.heads)
    while True:
        what = forge_head([], signed, rng)
        if "signed_at" not in what:  # the stored time is covered too, but kept simple here
            break
        signed = list(lg.heads)
    old = next(h for h, n in zip(lg.heads, signed, strict=True) if h != n)
    new = next(n for h, n in zip(lg.heads, signed, strict=True) if h != n)
    if new.tree_size != old.tree_size and new.tree_size in {h.tree_size for h in lg.heads}:
        new = dataclasses.replace(old, signature=_flip(old.signature, rng))
    _head_update(conn, lg, old, new)
    return what


def db_other_key(conn: Connection, lg: Ledger, rng: random.Random) -> str:
    old = rng.choice(lg.heads)
    forged = heads.sign_head(OTHER_KEY, PROJECT, old.tree_size, old.root_hash, old.signed_at)
    if rng.random() < 0.5:
        forged = dataclasses.replace(forged, key_id=old.key_id)
    _head_update(conn, lg, old, forged)
    return f"head of size {old.tree_size} re-signed by another key"


DB_KINDS: dict[str, tuple[Callable[[Connection, Ledger, random.Random], str], set[Failure]]] = {
    "modify": (db_modify, CHAIN),
    "delete": (db_delete, {Failure.GAP, Failure.TRUNCATED}),
    "reorder": (db_reorder, CHAIN),
    "truncate": (db_truncate, {Failure.TRUNCATED}),
    "insert": (db_insert, CHAIN | {Failure.ROOT_MISMATCH}),
    "forge_head": (db_forge_head, {Failure.BAD_SIGNATURE}),
    "other_key": (db_other_key, {Failure.UNKNOWN_KEY, Failure.BAD_SIGNATURE}),
}


def test_tampering_through_the_database_is_detected(engine: Engine) -> None:
    key = heads.generate_key()
    pid = build_ledger(engine, key)
    lg = read_ledger(engine, pid, key)
    with engine.connect() as conn:
        assert verify_project(conn, PROJECT, lg.keys).ok
    seen: dict[str, set[Failure]] = {}
    for kind, (tamper, expected) in sorted(DB_KINDS.items()):
        for trial in range(DB_TRIALS):
            rng = random.Random(f"db-{kind}-{trial}")
            with tampering(engine) as conn:
                what = tamper(conn, lg, rng)
                report = verify_project(conn, PROJECT, lg.keys)
            assert report.failure in expected, f"{kind} trial {trial} ({what}): {report}"
            seen.setdefault(kind, set()).add(report.failure)
    # Rolled back: the ledger is whole again, and verifies.
    with engine.connect() as conn:
        assert verify_project(conn, PROJECT, lg.keys).ok
    assert Failure.ROOT_MISMATCH in seen["insert"]  # re-hashing attackers are caught by heads


def test_a_pinned_head_must_be_genuine_and_extended(pure_ledger: Ledger) -> None:
    lg = pure_ledger
    by_size = {h.tree_size: h for h in lg.heads}

    def check(pin: TreeHead, head_row: ledger.Head | None = None) -> Failure:
        report = verify_records(PROJECT, lg.rows, lg.heads, lg.keys, head_row or lg.head_row, pin)
        return report.failure

    assert check(by_size[6]) is Failure.OK
    assert check(by_size[16]) is Failure.OK
    # A genuine head of another tree (the log was rewritten since it was signed).
    key = next(iter(PURE_KEY))
    other_tree = heads.sign_head(key, PROJECT, 12, bytes(32), by_size[12].signed_at)
    assert check(other_tree) is Failure.PIN
    # A genuine head larger than the log (the log was cut since).
    longer = heads.sign_head(key, PROJECT, 20, bytes(32), by_size[12].signed_at)
    assert check(longer) is Failure.TRUNCATED
    # A head signed by someone else, or altered.
    assert check(heads.sign_head(OTHER_KEY, PROJECT, 6, by_size[6].root_hash,
                                 by_size[6].signed_at)) is Failure.PIN  # fmt: skip
    assert check(dataclasses.replace(by_size[6], tree_size=7)) is Failure.PIN
    # The head row, out of step with the log.
    stale = dataclasses.replace(lg.head_row, seq=lg.head_row.seq - 1)
    assert check(by_size[6], stale) is Failure.HEAD_ROW
    wrong = dataclasses.replace(lg.head_row, merkle_state={"size": 16, "roots": ["00" * 32]})
    assert check(by_size[6], wrong) is Failure.HEAD_ROW
