"""A request's ledger event and its inclusion proof (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from app.audit import heads, ledger
from app.audit.ledger import checkpoints
from app.audit.ledger.inclusion import find_request_event, inclusion_status
from app.store.engine import write_transaction
from app.tenancy import projects


def test_a_request_event_is_found_and_proven(engine: Engine) -> None:
    pid = projects.create_project(engine, "proofs")
    key = heads.generate_key()
    ingested = datetime.now(UTC)
    with write_transaction(engine) as conn:
        ledger.append_many(conn, pid, "proofs", [
            (ledger.REQUEST, {"trace_id": f"{i:032x}", "spans": 1}) for i in range(40)
        ])  # fmt: skip
    found = find_request_event(engine, pid, f"{17:032x}", ingested)
    assert found is not None and found.payload["trace_id"] == f"{17:032x}"
    seq = found.seq
    assert find_request_event(engine, pid, "f" * 32, ingested) is None

    assert inclusion_status(engine, pid, seq, key.public_key()).status == "unsigned"
    checkpoints.sign_now(engine, key, pid)
    proven = inclusion_status(engine, pid, seq, key.public_key())
    assert proven.status == "verified" and proven.path_ok and proven.signature_ok
    # Against another key the head's signature does not verify.
    forged = inclusion_status(engine, pid, seq, heads.generate_key().public_key())
    assert forged.status == "failed" and not forged.signature_ok
    with write_transaction(engine) as conn:
        later = ledger.append(conn, pid, "proofs", ledger.REQUEST, {"trace_id": "e" * 32})
    pending = inclusion_status(engine, pid, later.seq, key.public_key())
    assert pending.status == "pending"
