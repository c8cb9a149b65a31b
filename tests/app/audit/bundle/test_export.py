"""Export bundles from a store filled through ingest and the live ledger, checked offline."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, insert, select, update

from app.audit import chain, heads, layout, ledger, merkle
from app.audit.bundle import LedgerMismatch, Scope, export_bundle, parse_model
from app.audit.ledger import checkpoints
from app.audit.verify import Failure, verify_bundle
from app.store.engine import write_transaction
from app.store.tables import AuditCheckpoint, AuditEvent, AuditHead, Request, SubjectKey
from tests.app.audit import bundle_data
from tests.app.audit.bundle_data import Store, at, members
from tests.app.audit.conftest import drop_triggers


def _jsonl(files: dict[str, bytes], name: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in files[name].splitlines()]


def _parts(files: dict[str, bytes], kind: str) -> list[str]:
    """The names of the bundle's events or requests parts, in order."""
    found = sorted((layout.part_number(name), name) for name in files if layout.part_number(name))
    return [name for part, name in found if part is not None and part[0] == kind]


def _events(files: dict[str, bytes]) -> list[dict[str, object]]:
    """Every event line of the bundle's ledger, across its parts."""
    return [e for name in _parts(files, "events") for e in _jsonl(files, name)]


def _requests(files: dict[str, bytes]) -> list[dict[str, object]]:
    return [r for name in _parts(files, "requests") for r in _jsonl(files, name)]


@pytest.fixture
def store(engine: Engine) -> Store:
    return bundle_data.fill(engine, heads.generate_key())


def test_a_full_export_holds_the_whole_log_and_every_record(store: Store, tmp_path: Path) -> None:
    result = store.export(tmp_path / "full.zip")
    files = members(result.path.read_bytes())
    manifest = orjson.loads(files[layout.MANIFEST])
    anchor = heads.head_from_json(manifest["ledger"]["anchor"])
    assert manifest["scope"]["mode"] == layout.FULL
    assert heads.verify_head(anchor, store.key.public_key())
    # Every event from seq 1 to the anchor, each line its canonical bytes and hashes.
    assert _parts(files, "events") == [layout.events_part(1)]
    assert _parts(files, "requests") == [layout.requests_part(1)]
    events = _events(files)
    assert [e["event"]["seq"] for e in events] == list(range(1, anchor.tree_size + 1))  # type: ignore[index]
    kinds = [e["event"]["kind"] for e in events]  # type: ignore[index]
    assert kinds.count("request") == 12 and "erasure" in kinds and "policy_set.changed" in kinds
    # The records: every request naming its ledger event, as JSON Lines and as Parquet.
    requests = _requests(files)
    assert sorted(r["trace_id"] for r in requests) == sorted(store.trace_ids)  # type: ignore[type-var]
    table = pq.read_table(io.BytesIO(files["records/requests.parquet"]))
    assert table.column("trace_id").to_pylist() == [r["trace_id"] for r in requests]
    by_seq = {e["event"]["seq"]: e for e in events}  # type: ignore[index]
    for record, line in zip(requests, files[layout.requests_part(1)].splitlines(), strict=True):
        # Each record ends with the seq and hash of its event: `layout.ledger_reference`.
        ledger = record["ledger"]
        assert isinstance(ledger, dict) and set(ledger) == {"hash", "seq"}
        found = by_seq[ledger["seq"]]
        event = found["event"]
        assert event["kind"] == "request" and event["payload"]["trace_id"] == record["trace_id"]  # type: ignore[index]
        reference = layout.ledger_reference(ledger["seq"], bytes.fromhex(found["hash"]))  # type: ignore[arg-type]
        assert line.endswith(b',"ledger":' + reference + b"}")
        digest = chain.event_hash(bytes.fromhex(found["prev_hash"]), event)  # type: ignore[arg-type]
        assert digest.hex() == found["hash"] == ledger["hash"]
    for table_name in ("spans", "world_model_states", "planner_decisions", "policy_evaluations"):
        rows = _jsonl(files, f"records/{table_name}.jsonl")
        assert rows and {r["trace_id"] for r in rows} == set(store.trace_ids)
        assert pq.read_metadata(io.BytesIO(files[f"records/{table_name}.parquet"])).num_rows == (
            len(rows)
        )
    reviews = _jsonl(files, "records/reviews.jsonl")
    assert [r["decided_by"] for r in reviews] == ["key:wdn_reviewer"]
    for name, info in manifest["files"].items():
        assert info["sha256"] == __import__("hashlib").sha256(files[name]).hexdigest()
    assert manifest["counts"]["requests"] == 12
    assert {p["policy_id"] for p in manifest["policies"]} == {"risk-cap"}
    assert manifest["policy_sets"][0]["payload"]["new"]  # the policy set hash in force
    assert {(v["name"], v["version"]) for v in manifest["lineage"]} == {
        ("intent-parser", "1"), ("booking-world-model", "3"), ("booking-world-model", "4"),
        ("mpc-planner", "2"),
    }  # fmt: skip
    verdict = verify_bundle(result.path, [store.key.public_key()])
    assert verdict.ok, verdict.summary()
    assert verdict.summary().startswith("OK (operator-signed only): signed by key ")
    assert "not that the log was never rewritten" in verdict.summary()
    assert (verdict.records, verdict.events, verdict.erased) == (12, anchor.tree_size, 4)


def test_erased_subjects_are_marked_in_the_records_and_the_report(
    store: Store, tmp_path: Path
) -> None:
    files = members(store.export(tmp_path / "full.zip").path.read_bytes())
    for record in _requests(files):
        erased = store.subjects[str(record["trace_id"])] == "bob"
        assert record["erased"] is erased
        assert record["subject"] == (None if erased else store.subjects[str(record["trace_id"])])
    html = files[layout.REPORT_HTML].decode()
    assert '<span class="erased">erased</span>' in html and "4\nerased" in html
    for duty in ("Art. 12(3)(a)", "Art. 12(3)(b)", "Art. 12(3)(c)", "Art. 12(3)(d)", "26(6)"):
        assert duty in html
    assert "key:wdn_reviewer" in html
    # Tallies and the policy set read as words, not as a program's dictionaries.
    outcomes = Counter(str(r["outcome"]) for r in _requests(files))
    assert "Outcomes: " + "; ".join(f"{k} {v}" for k, v in sorted(
        outcomes.items(), key=lambda kv: (-kv[1], kv[0]))) + "." in html  # fmt: skip
    assert "(replacing none); " in html and "risk-cap v1" in html and "{&#39;" not in html
    assert files[layout.REPORT_PDF].startswith(b"%PDF-")
    # An erased subject is found by its pseudonym only: its name leads nowhere any more.
    with store.engine.connect() as conn:
        pseudonym = conn.execute(
            select(SubjectKey.pseudonym).where(SubjectKey.destroyed_at.is_not(None))
        ).scalar_one()
    by_name = store.export(tmp_path / "bob.zip", Scope("shop", subject="bob"))
    assert by_name.manifest["counts"]["requests"] == 0
    by_pseudonym = store.export(tmp_path / "p.zip", Scope("shop", subject=pseudonym))
    assert by_pseudonym.manifest["counts"]["requests"] == 4
    assert by_pseudonym.manifest["counts"]["erased_requests"] == 4
    kinds = [e["event"]["kind"] for e in _events(members(by_pseudonym.path.read_bytes()))]  # type: ignore[index]
    assert "erasure" in kinds
    assert verify_bundle(by_pseudonym.path, [store.key.public_key()]).ok


def test_a_subjects_export_verifies_with_proofs_against_the_heads_of_the_full_log(
    store: Store, tmp_path: Path
) -> None:
    result = store.export(tmp_path / "alice.zip", Scope("shop", subject="alice"))
    files = members(result.path.read_bytes())
    manifest = orjson.loads(files[layout.MANIFEST])
    anchor = heads.head_from_json(manifest["ledger"]["anchor"])
    with store.engine.connect() as conn:
        log_size = len(list(ledger.iter_events(conn, store.project_id)))
    assert manifest["scope"]["mode"] == layout.PARTIAL
    assert anchor.tree_size == log_size  # a head of the whole log, not of the selection
    alice = [t for t, s in store.subjects.items() if s == "alice"]
    records = _requests(files)
    assert sorted(r["trace_id"] for r in records) == sorted(alice)  # type: ignore[type-var]
    events = {e["event"]["seq"]: e for e in _events(files)}  # type: ignore[index]
    assert len(events) < log_size
    # Each event is in the signed tree: its run's last event has an RFC 6962 audit path.
    proofs = _jsonl(files, layout.PROOFS)
    for proof in proofs:
        last = events[proof["last_seq"]]
        assert merkle.verify_inclusion(
            merkle.leaf_hash(bytes.fromhex(last["hash"])),  # type: ignore[arg-type]
            proof["leaf_index"], anchor.tree_size,  # type: ignore[arg-type]
            [bytes.fromhex(p) for p in proof["path"]], anchor.root_hash,  # type: ignore[union-attr]
        )  # fmt: skip
    covered = {s for p in proofs for s in range(p["first_seq"], p["last_seq"] + 1)}  # type: ignore[operator]
    assert covered == set(events)
    verdict = verify_bundle(result.path, [store.key.public_key()])
    assert verdict.ok, verdict.summary()
    assert (verdict.mode, verdict.records) == (layout.PARTIAL, len(alice))


def test_periods_and_models(store: Store, tmp_path: Path) -> None:
    # The requests started in 2023; the ledger began when they were stored, later: a period
    # starting before the ledger covers the log from seq 1, so the bundle replays it all.
    period = store.export(tmp_path / "p.zip", Scope("shop", since=at(3), until=at(9)))
    assert period.manifest["scope"]["mode"] == layout.FULL
    assert period.manifest["counts"]["requests"] == 6
    assert verify_bundle(period.path, [store.key.public_key()]).ok
    # A period starting inside the log is partial: its governance events, with proofs.
    with store.engine.connect() as conn:
        rows = list(ledger.iter_events(conn, store.project_id))
    erasure = next(r for r in rows if r.kind == "erasure")
    late = store.export(tmp_path / "late.zip", Scope("shop", since=erasure.created_at))
    assert late.manifest["scope"]["mode"] == layout.PARTIAL
    seqs = [e["event"]["seq"] for e in _events(members(late.path.read_bytes()))]  # type: ignore[index]
    assert seqs == [1, erasure.seq]  # the policy set in force when it began, the erasure
    assert late.manifest["counts"]["requests"] == 0
    assert verify_bundle(late.path, [store.key.public_key()]).ok
    name, version = parse_model("booking-world-model/4")
    model = store.export(
        tmp_path / "m.zip", Scope("shop", model_name=name, model_version=version)
    )
    records = _requests(members(model.path.read_bytes()))
    assert len(records) == 3  # every fourth request
    assert {(v["name"], v["version"]) for v in model.manifest["lineage"]} == {
        ("booking-world-model", "4")
    }
    assert verify_bundle(model.path, [store.key.public_key()]).ok


def test_requests_stored_before_the_ledger_began_are_exported_without_an_event(
    store: Store, tmp_path: Path
) -> None:
    _old_request(store, 1)
    result = store.export(tmp_path / "old.zip")
    assert result.manifest["counts"]["requests_without_ledger_event"] == 1
    files = members(result.path.read_bytes())
    # After the requests part of each events part, the parts of requests without an event.
    assert _parts(files, "requests") == [layout.requests_part(1), layout.requests_part(2)]
    assert [r["ledger"] for r in _jsonl(files, layout.requests_part(2))] == [None]
    verdict = verify_bundle(result.path, [store.key.public_key()])
    assert verdict.ok and verdict.uncovered == 1


def test_an_export_refuses_a_ledger_changed_after_it_was_signed(
    store: Store, tmp_path: Path
) -> None:
    with store.engine.connect() as conn, conn.begin():
        drop_triggers(conn)
        conn.execute(
            update(AuditEvent)
            .where(AuditEvent.project_id == store.project_id, AuditEvent.seq == 3)
            .values(payload={"trace_id": "forged"})
        )
    with pytest.raises(LedgerMismatch, match="does not hash to its stored hash"):
        store.export(tmp_path / "x.zip")


def _rewrite_log(store: Store, seq: int) -> None:
    """What an operator with the database and the signing key does: change event `seq`,
    recompute every later hash, drop the signed heads and sign new ones."""
    engine = store.engine
    with engine.connect() as conn, conn.begin():
        drop_triggers(conn)
        rows = list(ledger.iter_events(conn, store.project_id))
        prev = bytes(rows[seq - 2].hash) if seq > 1 else chain.GENESIS
        acc = merkle.MerkleAccumulator()
        for row in rows[: seq - 1]:
            acc.append(merkle.leaf_hash(bytes(row.hash)))
        for row in rows[seq - 1 :]:
            payload = dict(row.payload)
            if row.seq == seq:
                payload["outcome"] = "booked" if payload.get("outcome") != "booked" else "denied"
            event = {"seq": row.seq, "project": store.project, "kind": row.kind,
                     "created_at": row.created_at, "payload": payload}  # fmt: skip
            digest = chain.event_hash(prev, event)
            conn.execute(
                update(AuditEvent)
                .where(AuditEvent.project_id == store.project_id, AuditEvent.seq == row.seq)
                .values(payload=payload, prev_hash=prev, hash=digest)
            )
            if row.seq == seq:
                conn.execute(
                    update(Request)
                    .where(Request.project_id == store.project_id,
                           Request.trace_id == payload["trace_id"])
                    .values(outcome=payload["outcome"])
                )  # fmt: skip
            acc.append(merkle.leaf_hash(digest))
            prev = digest
        conn.execute(
            AuditCheckpoint.__table__.delete().where(  # type: ignore[attr-defined]
                AuditCheckpoint.project_id == store.project_id
            )
        )
        conn.execute(
            update(AuditHead)
            .where(AuditHead.project_id == store.project_id)
            .values(last_hash=prev, merkle_state=ledger.merkle_state(acc))
        )
    checkpoints.sign_heads(engine, store.key, store.project_id)


def test_a_pinned_head_catches_a_log_rewritten_and_re_signed_with_the_real_key(
    store: Store, tmp_path: Path
) -> None:
    key = [store.key.public_key()]
    first = store.export(tmp_path / "first.zip")
    kept = heads.head_from_json(first.manifest["ledger"]["anchor"])
    # The log grows honestly: a later bundle is consistent with the pinned head.
    bundle_data.ingest(store.engine, store.project_id, 3, first=40)
    honest = store.export(tmp_path / "honest.zip")
    assert honest.manifest["ledger"]["anchor"]["tree_size"] > kept.tree_size
    verdict = verify_bundle(honest.path, key, kept)
    assert verdict.ok and verdict.summary().startswith("OK: signed by key ")
    partial = store.export(tmp_path / "alice.zip", Scope("shop", subject="alice"))
    assert verify_bundle(partial.path, key, kept).ok  # by the heads' consistency proofs
    # Now the operator rewrites event 3 and everything after it, and signs again.
    _rewrite_log(store, 3)
    rewritten = store.export(tmp_path / "rewritten.zip")
    alone = verify_bundle(rewritten.path, key)
    assert alone.ok and "operator-signed only" in alone.summary()
    pinned = verify_bundle(rewritten.path, key, kept)
    assert pinned.exit_code == Failure.CONSISTENCY
    assert "the log was rewritten" in pinned.summary()
    partial = store.export(tmp_path / "alice2.zip", Scope("shop", subject="alice"))
    assert verify_bundle(partial.path, key).ok
    assert verify_bundle(partial.path, key, kept).exit_code == Failure.CONSISTENCY


def test_a_pin_of_a_size_with_no_stored_head_needs_prove_from(
    store: Store, tmp_path: Path
) -> None:
    with store.engine.connect() as conn:
        rows = list(ledger.iter_events(conn, store.project_id))
    size = 5
    tree = merkle.MerkleTree(merkle.leaf_hash(bytes(r.hash)) for r in rows)
    pin = heads.sign_head(store.key, store.project, size, tree.root(size), at(0))
    scope = Scope("shop", subject="alice")
    plain = store.export(tmp_path / "a.zip", scope)
    verdict = verify_bundle(plain.path, [store.key.public_key()], pin)
    assert verdict.exit_code == Failure.CONSISTENCY and "--prove-from 5" in verdict.summary()
    proved = export_bundle(store.engine, scope, tmp_path / "b.zip", store.key, prove_from=[5])
    assert verify_bundle(proved.path, [store.key.public_key()], pin).ok


def _old_request(store: Store, n: int) -> None:
    """A request stored before the ledger began (exported without a ledger event): trace
    `0...0n`, starting 29 + n seconds into the store's traffic."""
    start = bundle_data.T0 + (29 + n) * bundle_data.SECOND
    with write_transaction(store.engine) as conn:
        conn.execute(
            insert(Request).values(
                project_id=store.project_id, trace_id="0" * 31 + str(n), root_span_id=str(n) * 16,
                name="request", start_time_unix_nano=start,
                end_time_unix_nano=start + bundle_data.SECOND, duration_ms=1.0,
                status="ok", models={}, ingested_at=at(-10**8),
            )
        )  # fmt: skip


def test_a_bundle_in_many_parts_pairs_each_part_of_records_with_its_part_of_events(
    store: Store, tmp_path: Path
) -> None:
    _old_request(store, 2)
    result = store.export(tmp_path / "parts.zip", part_events=4)
    files = members(result.path.read_bytes())
    size = result.manifest["ledger"]["anchor"]["tree_size"]
    events, requests = _parts(files, "events"), _parts(files, "requests")
    assert events == [layout.events_part(k) for k in range(1, (size + 3) // 4 + 1)]
    # Full scope: events part k holds seqs 4k-3 .. 4k; requests part k the records of those
    # events, in their order; one more requests part holds the request without an event.
    assert requests == [layout.requests_part(k) for k in range(1, len(events) + 2)]
    pairs = zip(events, requests[: len(events)], strict=True)
    for k, (events_name, requests_name) in enumerate(pairs, 1):
        seqs = [e["event"]["seq"] for e in _jsonl(files, events_name)]  # type: ignore[index]
        assert seqs == list(range(4 * k - 3, min(4 * k, size) + 1))
        named = [r["ledger"]["seq"] for r in _jsonl(files, requests_name)]  # type: ignore[index]
        assert named == sorted(named) and set(named) <= set(seqs)
        for name, count in ((events_name, len(seqs)), (requests_name, len(named))):
            assert result.manifest["files"][name]["records"] == count
    assert [r["ledger"] for r in _jsonl(files, requests[-1])] == [None]
    assert len(_requests(files)) == result.manifest["counts"]["requests"] == 13
    key = [store.key.public_key()]
    here, workers = verify_bundle(result.path, key), verify_bundle(result.path, key, workers=2)
    assert here.ok and workers.ok, (here.summary(), workers.summary())
    assert (here.parts, here.workers, workers.workers) == (len(events), 0, 2)
    for verdict in (here, workers):
        assert (verdict.records, verdict.events, verdict.erased, verdict.uncovered) == (
            13, size, 4, 1,
        )  # fmt: skip
    partial = store.export(tmp_path / "alice.zip", Scope("shop", subject="alice"), part_events=2)
    assert len(_parts(members(partial.path.read_bytes()), "events")) > 1
    assert verify_bundle(partial.path, key).ok
    assert verify_bundle(partial.path, key, workers=2).ok
