"""A request's ledger event and its inclusion proof (SQLite and PostgreSQL), and the span
waterfall's tree order, whatever the spans' parents say."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from app.audit import heads, ledger
from app.audit.ledger import checkpoints
from app.dashboard import ledger_entry, waterfall
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
    found = ledger_entry.find_request_event(engine, pid, f"{17:032x}", ingested)
    assert found is not None and found["payload"]["trace_id"] == f"{17:032x}"
    seq = found["seq"]
    assert ledger_entry.find_request_event(engine, pid, "f" * 32, ingested) is None

    assert ledger_entry.inclusion_status(engine, pid, seq, key.public_key())["status"] == (
        "unsigned"
    )
    checkpoints.sign_now(engine, key, pid)
    proven = ledger_entry.inclusion_status(engine, pid, seq, key.public_key())
    assert proven["status"] == "verified" and proven["path_ok"] and proven["signature_ok"]
    # Against another key the head's signature does not verify.
    forged = ledger_entry.inclusion_status(engine, pid, seq, heads.generate_key().public_key())
    assert forged["status"] == "failed" and not forged["signature_ok"]
    with write_transaction(engine) as conn:
        later = ledger.append(conn, pid, "proofs", ledger.REQUEST, {"trace_id": "e" * 32})
    pending = ledger_entry.inclusion_status(engine, pid, later.seq, key.public_key())
    assert pending["status"] == "pending"


def test_the_waterfall_order_is_depth_first_and_survives_loops() -> None:
    skeleton = [
        ("a", None, 0), ("b", "a", 1), ("c", "b", 2), ("d", "a", 3),
        ("x", "y", 4), ("y", "x", 5),  # a loop: placed once each, as roots
        ("o", "missing", 6), ("s", "s", 7),  # an absent parent, its own parent
    ]  # fmt: skip
    ids, depth, children = waterfall.order(skeleton)
    assert ids[:4] == ["a", "b", "c", "d"]
    assert sorted(ids) == sorted(s for s, _, _ in skeleton)
    assert depth["c"] == 2 and depth["o"] == 0 and depth["s"] == 0
    assert children == {"a": 2, "b": 1, "x": 1, "y": 1}
    sizes = waterfall.subtree_sizes(ids, depth)
    assert sizes["a"] == 4 and sizes["b"] == 2 and sizes["c"] == 1
    assert sum(sizes[i] for i in ids if depth[i] == 0) == len(ids)
