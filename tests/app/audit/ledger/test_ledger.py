"""The live ledger on SQLite and PostgreSQL: appends, request events at ingest, governance
events, the HTTP API, and the database refusing changes to ledger rows."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from app.audit import chain, heads, ledger, merkle
from app.audit.ledger import checkpoints
from app.config import Settings
from app.governance import reviews
from app.store.engine import write_transaction
from app.store.tables import AuditEvent, Project, Request, Span
from app.tenancy import projects
from collectors import conventions as wire
from policies import BUILTIN
from tests import otlp
from tests.app.audit.conftest import events, ingest, project, verify
from tests.conftest import LiveService, running


def test_appends_chain_each_event_to_the_one_before(
    engine: Engine, signing_key: object
) -> None:
    pid = project(engine, "shop")
    payloads = [
        {"note": "café", "score": 0.25, "n": 3, "nested": {"b": [1, 2.5, None], "a": True}},
        {"big": 2**60, "nan": float("nan"), "surrogate": "\ud800x", "nul": "a\x00b"},
        {},
    ]
    with write_transaction(engine) as conn:
        first = ledger.append(conn, pid, "shop", "test.one", payloads[0])
    with write_transaction(engine) as conn:
        rest = ledger.append_many(conn, pid, None, [("test.two", payloads[1]), ("test.three", {})])
    appended = [first, *rest]
    rows = events(engine, pid)
    assert [r.seq for r in rows] == [e.seq for e in appended] == [1, 2, 3]
    prev = chain.GENESIS
    for row, event in zip(rows, appended, strict=True):
        assert bytes(row.prev_hash) == prev == event.prev_hash
        stored = {"seq": row.seq, "project": "shop", "kind": row.kind,
                  "created_at": row.created_at, "payload": row.payload}  # fmt: skip
        assert chain.event_hash(prev, stored) == bytes(row.hash) == event.hash
        prev = bytes(row.hash)
    # What JSON cannot carry exactly was made representable before hashing.
    assert rows[1].payload == {"big": str(2**60), "nan": None, "surrogate": "\ufffdx",
                               "nul": "a\ufffdb"}  # fmt: skip
    with engine.connect() as conn:
        head = ledger.read_head(conn, pid)
    assert head is not None and head.seq == 3 and head.last_hash == prev
    assert head.accumulator().root() == merkle.root(
        [merkle.leaf_hash(bytes(r.hash)) for r in rows]
    )
    with pytest.raises(ValueError, match="named 'shop'"), write_transaction(
        engine
    ) as conn:
        ledger.append(conn, pid, "other", "test.x", {})


def test_one_request_event_per_stored_request_and_none_for_a_resend(engine: Engine) -> None:
    pid = project(engine, "shop")
    ids = otlp.Ids(3)
    first, second = otlp.hybrid_trace(ids), otlp.hybrid_trace(
        ids, **{wire.REQUEST_SUBJECT: "user-1"}
    )
    # The root of `second` comes in a later batch than its children.
    assert ingest(engine, pid, [*first, *second[1:]]).requests == 1
    assert ingest(engine, pid, second[:1]).requests == 1
    rows = events(engine, pid)
    assert [r.kind for r in rows] == ["request", "request"]
    by_trace = {r.payload["trace_id"]: r.payload for r in rows}
    for trace in (first, second):
        payload = by_trace[trace[0].trace_id.hex()]
        assert payload["models"]["world_model"] == {"name": "booking-world-model", "version": "3"}
        assert payload["outcome"] == "booked"
        assert payload["fingerprint"] == "ab" * 32
        assert payload["decisions"] == [
            {"chosen": "room-a@15:00", "confidence": 0.9, "candidates": 2}
        ]
        assert payload["policies"] == [{"id": "risk-cap", "version": "1", "outcome": "allow"}]
        assert payload["spans"] == 4
        with engine.connect() as conn:
            digests = conn.execute(
                select(Span.body_digest)
                .where(Span.project_id == pid, Span.trace_id == trace[0].trace_id.hex())
                .order_by(Span.span_id)
            ).scalars()
            assert payload["spans_digest"] == hashlib.sha256(
                b"".join(bytes(d) for d in digests)
            ).hexdigest()
        assert payload["input_retained"] is False
    # The subject is named by its pseudonym, never by its id.
    pseudonym = by_trace[second[0].trace_id.hex()]["subject"]
    assert len(pseudonym) == 32 and "user-1" not in str(rows[1].payload)
    assert "subject" not in by_trace[first[0].trace_id.hex()]

    # Sent again: nothing new is stored, nothing is appended.
    assert ingest(engine, pid, [*first, *second]).accepted == 0
    # The same ids with other bodies are conflicts: not stored, not recorded.
    changed = otlp.hybrid_trace(otlp.Ids(3), **{wire.REQUEST_OUTCOME: "other"})
    assert ingest(engine, pid, changed).conflicts == 1  # the root: a new outcome
    assert len(events(engine, pid)) == 2


def test_a_failed_batch_appends_nothing_and_stores_nothing(engine: Engine) -> None:
    pid = project(engine, "shop")
    # Make the ledger step itself fail, inside the ingest transaction.
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE FUNCTION t_fail() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'ledger down'; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER t_fail BEFORE INSERT ON audit_events "
                "FOR EACH ROW EXECUTE FUNCTION t_fail()"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER t_fail BEFORE INSERT ON audit_events "
                "BEGIN SELECT RAISE(ABORT, 'ledger down'); END"
            )
    with pytest.raises(DBAPIError, match="ledger down"):
        ingest(engine, pid, otlp.hybrid_trace(otlp.Ids(4)))
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Span)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(Request)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(AuditEvent)).scalar_one() == 0


def test_a_malformed_export_appends_nothing(live: LiveService) -> None:
    key = live.key("shop", "ingest")
    before = len(events(live.engine, projects.project_id(live.engine, "shop")))
    with live.client(key) as client:
        answer = client.post("/v1/traces", content=b"\x0a\xff garbage", headers=otlp.PROTOBUF)
    assert answer.status_code == 400
    assert len(events(live.engine, projects.project_id(live.engine, "shop"))) == before


def test_governance_actions_are_recorded(engine: Engine, signing_key: object) -> None:
    pid = project(engine, "shop")
    key = projects.create_key(engine, b"s", "shop", ["read", "ingest"], "pods")
    projects.revoke_key(engine, key[:12])
    ingest(engine, pid, otlp.hybrid_trace(otlp.Ids(5), **{wire.REVIEW_REQUIRED: True}))
    (review,) = reviews.list_reviews(engine, pid)
    reviews.decide(engine, pid, review.id, False, "key:wdn_x", "no")
    summary = {
        "job_id": "j1", "model_name": "m", "model_version": "2", "verdict": "drift",
        "reports": [{"kind": "latent", "verdict": "drift", "share_drifted": 0.5,
                     "current": {"requests": 80}, "scores": {"x": float("nan")}}],
        "policies": {"latent": [{"policy_id": "p", "version": "1", "effect": "rollback",
                                 "fired": True, "message": "m"}]},
        "rollbacks": [{"alias": "champion", "from": "2", "to": "1", "kind": "latent"}],
        "mlflow_run_id": "r1",
    }  # fmt: skip
    ledger.record_drift(engine, pid, "shop", summary)
    with write_transaction(engine) as conn:
        ledger.record_export(conn, pid, None, {"bundle_sha256": "00" * 32, "tree_size": 5})
    rows = events(engine, pid)
    kinds = [r.kind for r in rows]
    assert kinds == ["key.created", "key.revoked", "request", "review.rejected", "drift.verdict",
                     "export.produced"]  # fmt: skip
    assert rows[0].payload == {"key_id": key[:12], "scopes": ["ingest", "read"], "name": "pods"}
    assert rows[1].payload == {"key_id": key[:12]}
    assert rows[3].payload["review_id"] == review.id and rows[3].payload["note"] == "no"
    drift = rows[4].payload
    assert drift["verdict"] == "drift" and drift["model"] == {"name": "m", "version": "2"}
    assert drift["reports"] == [
        {"kind": "latent", "verdict": "drift", "share_drifted": 0.5, "requests": 80}
    ]
    assert drift["rollbacks"][0]["alias"] == "champion" and len(drift["summary_sha256"]) == 64
    assert verify(engine, "shop", signing_key).ok  # type: ignore[arg-type]


def test_the_policy_set_in_force_is_recorded_when_it_changes(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    projects.create_project(engine, "shop")
    pid = projects.project_id(engine, "shop")
    with running(settings, engine):
        pass
    with running(settings, engine):  # the same set again: nothing new
        pass
    custom = tmp_path / "policies"
    custom.mkdir()
    (custom / "risk-cap.yaml").write_text((BUILTIN / "risk-cap.yaml").read_text())
    with running(settings.model_copy(update={"policies_dir": custom}), engine):
        pass
    rows = [r for r in events(engine, pid) if r.kind == "policy_set.changed"]
    assert len(rows) == 2
    assert rows[0].payload["old"] is None
    assert rows[1].payload["old"] == rows[0].payload["new"] != rows[1].payload["new"]
    assert [p["id"] for p in rows[1].payload["policies"]] == ["risk-cap"]


def test_audit_api_heads_events_and_proofs(live: LiveService) -> None:
    admin = live.key("shop", "admin")
    auditor = live.key("shop", "audit")
    reader = live.key("shop", "read", "ingest")
    with live.client() as anonymous:
        public = anonymous.get("/v1/audit/public-key").raise_for_status().json()
    public_key = heads.load_public_key(public["public_key_pem"])
    assert public["key_id"] == heads.key_id(public_key)
    with live.client(reader) as client:
        trace = otlp.hybrid_trace(otlp.Ids(6))
        body = otlp.request(trace).SerializeToString()
        assert client.post("/v1/traces", content=body, headers=otlp.PROTOBUF).status_code == 200
        assert client.get("/v1/audit/events").status_code == 403
    with live.client(auditor) as client:
        assert client.get("/v1/audit/heads/latest").status_code == 404
        assert client.post("/v1/audit/heads").status_code == 403
    with live.client(admin) as client:
        first = client.post("/v1/audit/heads").raise_for_status().json()
        assert first["tree_size"] == 4  # three keys and one request
        assert client.post("/v1/audit/heads").json() == first  # nothing grew: the same head
        client.post(
            "/v1/traces",
            content=otlp.request(otlp.hybrid_trace(otlp.Ids(7))).SerializeToString(),
            headers=otlp.PROTOBUF,
        )
        second = client.post("/v1/audit/heads").raise_for_status().json()
    assert second["tree_size"] == 5
    with live.client(auditor) as client:
        listed = client.get("/v1/audit/heads").json()["items"]
        assert listed == [second, first]
        assert client.get("/v1/audit/heads/latest").json() == second
        page = client.get("/v1/audit/events", params={"from_seq": 2, "limit": 2}).json()
        assert [e["seq"] for e in page["items"]] == [2, 3] and page["next_from_seq"] == 4
        everything = client.get("/v1/audit/events", params={"limit": 1000}).json()["items"]
        assert [e["kind"] for e in everything] == ["key.created"] * 3 + ["request"] * 2
        proof = client.get("/v1/audit/proof/4", params={"tree_size": 4}).json()
        default = client.get("/v1/audit/proof/2").json()
        consistency = client.get("/v1/audit/consistency", params={"first": 4}).json()
        assert client.get("/v1/audit/proof/9").status_code == 400
        assert client.get("/v1/audit/proof/1", params={"tree_size": 3}).status_code == 404
    for head_json in (first, second):
        assert heads.verify_head(heads.head_from_json(head_json), public_key)
    # Each event verifies against its hashes, and the proofs against the signed roots.
    prev = chain.GENESIS
    for e in everything:
        event = {k: e[k] for k in ("seq", "project", "kind", "created_at", "payload")}
        assert bytes.fromhex(e["prev_hash"]) == prev
        assert chain.event_hash(prev, event).hex() == e["hash"]
        prev = bytes.fromhex(e["hash"])
    assert merkle.verify_inclusion(
        merkle.leaf_hash(bytes.fromhex(everything[3]["hash"])), 3, 4,
        [bytes.fromhex(p) for p in proof["proof"]], bytes.fromhex(first["root_hash"]),
    )  # fmt: skip
    assert default["tree_size"] == 5 and merkle.verify_inclusion(
        bytes.fromhex(default["leaf_hash"]), 1, 5,
        [bytes.fromhex(p) for p in default["proof"]], bytes.fromhex(second["root_hash"]),
    )  # fmt: skip
    assert consistency["first_head"] == first and consistency["second_head"] == second
    assert merkle.verify_consistency(
        4, 5, bytes.fromhex(first["root_hash"]), bytes.fromhex(second["root_hash"]),
        [bytes.fromhex(p) for p in consistency["proof"]],
    )  # fmt: skip
    assert base64.b64decode(second["signature"])


def test_the_signer_thread_signs_heads_of_ledgers_that_grew(
    settings: Settings, engine: Engine
) -> None:
    fast = settings.model_copy(update={"audit_checkpoint_interval": 0.2})
    with running(fast, engine) as service:
        service.key("shop", "ingest")
        pid = projects.project_id(engine, "shop")
        deadline = time.monotonic() + 15
        latest = None
        while time.monotonic() < deadline:
            latest = checkpoints.latest_head(engine, pid)
            if latest is not None and latest.tree_size == 2:  # policy set, key
                break
            time.sleep(0.05)
        assert latest is not None and latest.tree_size == 2
        with engine.connect() as conn:
            signed = len(checkpoints.stored_heads(conn, pid, "shop"))
        time.sleep(0.6)  # nothing grew: no new head
        with engine.connect() as conn:
            assert len(checkpoints.stored_heads(conn, pid, "shop")) == signed
    key = checkpoints.signing_key(fast)
    assert checkpoints.signing_key_path(fast).stat().st_mode & 0o777 == 0o600
    assert verify(engine, "shop", key).heads == 1


def test_the_database_refuses_to_change_ledger_rows(engine: Engine) -> None:
    pid = project(engine, "shop")
    projects.create_key(engine, b"s", "shop", ["read"])
    key = heads.generate_key()
    checkpoints.sign_heads(engine, key, pid)
    statements = [
        "UPDATE audit_events SET kind = 'forged'",
        "UPDATE audit_events SET payload = payload",
        "DELETE FROM audit_events",
        "UPDATE audit_checkpoints SET tree_size = 9",
        "DELETE FROM audit_checkpoints",
        # A project with ledger events cannot be deleted: the cascade is a DELETE too.
        "DELETE FROM projects",
    ]
    if engine.dialect.name == "postgresql":
        statements += ["TRUNCATE audit_events", "TRUNCATE audit_checkpoints",
                       "TRUNCATE projects CASCADE"]  # fmt: skip
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(AuditEvent)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(Project)).scalar_one() == 1
    assert verify(engine, "shop", key).ok
