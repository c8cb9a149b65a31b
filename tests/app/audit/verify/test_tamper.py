"""Tampering with export bundles, randomised and seeded: every change is caught.

Two attackers. One without the signing key edits the files of a bundle (a byte, a deleted,
moved, cut or added line, a forged signature): the manifest's signature or a file's digest
gives it away. One with the key (the operator) edits the ledger's events and signs the
manifest again: the events' hashes, the chain, the proofs or the heads give it away. Each
kind of change by an outsider is tried 1,000 times on a small bundle, in memory (each kind
by the operator 200 times on each of two bundles); an untouched bundle, repacked any which
way, always passes. The bundles are written in parts of a few events, so that changes fall
inside parts and across them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit import heads, layout
from app.audit.bundle import Scope
from app.audit.verify import Failure, verify_bundle
from app.config import Settings
from app.store import schema
from app.store.engine import create_db_engine
from tests.app.audit import bundle_data
from tests.app.audit.bundle_data import lines, members, repack, resign

TRIALS = 1000
# The operator's edits of the ledger: five kinds, on two bundles.
OPERATOR_TRIALS = 200
# Events per part of the test bundles (`layout.PART_EVENTS` in real ones): several parts each.
FULL_PART, PARTIAL_PART = 4, 2
UNSIGNED = {Failure.MANIFEST_SIGNATURE, Failure.FILE_DIGEST}
# What an operator's rewrite of the ledger's events can show up as.
LEDGER = {Failure.RECORD_HASH, Failure.CHAIN, Failure.INCLUSION, Failure.COUNTS}


class Bundles:
    def __init__(self, key: Ed25519PrivateKey, full: bytes, partial: bytes) -> None:
        self.key = key
        self.full = full
        self.partial = partial
        self.trusted = [key.public_key()]

    def code(self, bundle: bytes) -> Failure:
        verdict = verify_bundle(bundle, self.trusted)
        return verdict.problem.failure if verdict.problem else Failure.OK


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bundles]:
    """A full bundle of a small store (6 requests, one subject erased), and a partial one,
    each in several parts."""
    root = tmp_path_factory.mktemp("tamper")
    settings = Settings(
        data_dir=root / "data", database_url=f"sqlite:///{root / 'warden.db'}",
        secret_key="tamper", lineage_interval=0, drift_tick=0,
    )  # fmt: skip
    engine = create_db_engine(settings)
    schema.upgrade(engine)
    key = heads.generate_key()
    store = bundle_data.fill(engine, key, requests=6)
    full = store.export(root / "full.zip", part_events=FULL_PART).path.read_bytes()
    partial = store.export(
        root / "alice.zip", Scope("shop", subject="alice"), part_events=PARTIAL_PART
    ).path.read_bytes()
    engine.dispose()
    for bundle in (full, partial):
        assert len(_events_parts(members(bundle))) > 1
    yield Bundles(key, full, partial)


def _events_parts(files: dict[str, bytes]) -> list[str]:
    found = sorted((layout.part_number(name), name) for name in files if layout.part_number(name))
    return [name for part, name in found if part is not None and part[0] == "events"]


def _jsonl(files: dict[str, bytes], rng: random.Random, at_least: int = 1) -> str:
    names = [n for n in sorted(files) if n.endswith(".jsonl") and len(lines(files[n])) >= at_least]
    return rng.choice(names)


def _trials(seed: int) -> Iterator[random.Random]:
    rng = random.Random(seed)
    for _ in range(TRIALS):
        yield rng


def _all_caught(
    bundles: Bundles, source: bytes, seed: int, tamper: Callable[[dict[str, bytes], random.Random],
                                                                   dict[str, bytes] | None],
    allowed: set[Failure],
) -> None:
    original = members(source)
    tried = 0
    for rng in _trials(seed):
        changed = tamper(dict(original), rng)
        if changed is None or changed == original:
            continue
        tried += 1
        code = bundles.code(repack(changed))
        assert code in allowed, f"trial {tried}: {code!r} not in {sorted(allowed)}"
    assert tried >= TRIALS * 0.9


def test_an_untouched_bundle_always_passes_however_it_is_zipped(bundles: Bundles) -> None:
    for source in (bundles.full, bundles.partial):
        assert bundles.code(source) is Failure.OK
        files = members(source)
        rng = random.Random(1)
        for _ in range(100):
            order = list(files)
            rng.shuffle(order)
            assert bundles.code(repack(files, level=rng.choice([0, 1, 9]), order=order)) is (
                Failure.OK
            )


def test_any_single_byte_changed_is_caught(bundles: Bundles) -> None:
    def flip(files: dict[str, bytes], rng: random.Random) -> dict[str, bytes]:
        name = rng.choice(
            [layout.MANIFEST, *(n for n in files if n.startswith(("records/", "ledger/")))]
        )
        data = bytearray(files[name])
        if not data:
            return files
        data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
        return {**files, name: bytes(data)}

    _all_caught(bundles, bundles.full, 1, flip, UNSIGNED)
    _all_caught(bundles, bundles.partial, 2, flip, UNSIGNED)


def test_a_deleted_record_is_caught(bundles: Bundles) -> None:
    def delete(files: dict[str, bytes], rng: random.Random) -> dict[str, bytes]:
        name = _jsonl(files, rng)
        rows = lines(files[name])
        del rows[rng.randrange(len(rows))]
        return {**files, name: b"".join(rows)}

    _all_caught(bundles, bundles.full, 3, delete, UNSIGNED)


def test_reordered_records_are_caught(bundles: Bundles) -> None:
    def swap(files: dict[str, bytes], rng: random.Random) -> dict[str, bytes] | None:
        name = _jsonl(files, rng, at_least=2)
        rows = lines(files[name])
        i, j = rng.sample(range(len(rows)), 2)
        if rows[i] == rows[j]:
            return None
        rows[i], rows[j] = rows[j], rows[i]
        return {**files, name: b"".join(rows)}

    _all_caught(bundles, bundles.full, 4, swap, UNSIGNED)


def test_a_truncated_file_or_bundle_is_caught(bundles: Bundles) -> None:
    def cut_file(files: dict[str, bytes], rng: random.Random) -> dict[str, bytes]:
        name = rng.choice([n for n in files if files[n] and n != layout.PUBLIC_KEY])
        return {**files, name: files[name][: rng.randrange(len(files[name]))]}

    _all_caught(bundles, bundles.full, 5, cut_file, UNSIGNED)
    rng = random.Random(6)
    for _ in range(TRIALS):
        cut = bundles.full[: rng.randrange(len(bundles.full))]
        assert bundles.code(cut) in UNSIGNED


def test_an_inserted_record_is_caught(bundles: Bundles) -> None:
    def insert(files: dict[str, bytes], rng: random.Random) -> dict[str, bytes]:
        name = _jsonl(files, rng)
        rows = lines(files[name])
        donor = lines(files[_jsonl(files, rng)])
        rows.insert(rng.randrange(len(rows) + 1), rng.choice(donor))
        return {**files, name: b"".join(rows)}

    _all_caught(bundles, bundles.full, 7, insert, UNSIGNED)


def test_a_forged_signature_is_caught(bundles: Bundles) -> None:
    files = members(bundles.full)
    rng = random.Random(8)
    for trial in range(TRIALS):
        if trial % 2:
            forged = {**files, layout.SIGNATURE: rng.randbytes(64)}
        else:  # the manifest changed and signed by someone else's key
            other = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
            forged = resign(files, other, lambda m: m["counts"].update(requests=rng.randrange(99)))
        assert bundles.code(repack(forged)) is Failure.MANIFEST_SIGNATURE


def test_a_head_from_another_key_is_caught(bundles: Bundles) -> None:
    """Even in a manifest signed with the real key: the head must be signed by a trusted key."""
    rng = random.Random(9)
    for source in (bundles.full, bundles.partial):
        files = members(source)
        for _ in range(TRIALS // 2):
            other = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))

            def swap_head(manifest: dict[str, object], other: Ed25519PrivateKey = other) -> None:
                ledger = manifest["ledger"]
                assert isinstance(ledger, dict)
                anchor = heads.head_from_json(ledger["anchor"])
                forged = heads.sign_head(
                    other, anchor.project, anchor.tree_size, anchor.root_hash, anchor.signed_at
                )
                if rng.random() < 0.5 or not ledger["heads_in_range"]:
                    ledger["anchor"] = heads.head_to_json(forged)
                else:
                    ledger["heads_in_range"][-1] = heads.head_to_json(forged)

            code = bundles.code(repack(resign(files, bundles.key, swap_head)))
            assert code is Failure.HEAD_SIGNATURE


def _resigned_event_tamper(
    bundles: Bundles, source: bytes, seed: int,
    change: Callable[[list[bytes], random.Random], list[bytes] | None],
) -> None:  # fmt: skip
    """The key's holder edits the ledger's events (and then the request records' references
    must still match: they are left alone) and signs the manifest again, counts and all.

    The change is made to the events of all parts in a row, and the result put back into the
    parts, each as long as it was (the last one takes what is left)."""
    original = members(source)
    names = _events_parts(original)
    sizes = [len(lines(original[name])) for name in names]
    events = [row for name in names for row in lines(original[name])]
    rng = random.Random(seed)
    tried = 0
    for _ in range(OPERATOR_TRIALS):
        rows = change(list(events), rng)
        if rows is None or rows == events:
            continue
        parts: dict[str, list[bytes]] = {}
        start = 0
        for i, name in enumerate(names):
            end = start + sizes[i] if i < len(names) - 1 else len(rows)
            parts[name] = rows[start:end]
            start = end
        files = {**original, **{name: b"".join(part) for name, part in parts.items()}}

        def recount(
            manifest: dict[str, object], n: int = len(rows), parts: dict[str, list[bytes]] = parts
        ) -> None:
            if rng.random() < 0.5:
                for name, part in parts.items():
                    manifest["files"][name]["records"] = len(part)  # type: ignore[index]
                manifest["counts"]["ledger_events"] = n  # type: ignore[index]
                manifest["ledger"]["events"] = n  # type: ignore[index]

        code = bundles.code(repack(resign(files, bundles.key, recount)))
        assert code in LEDGER, f"{code!r}"
        tried += 1
    assert tried >= OPERATOR_TRIALS * 0.9


def test_an_operator_rewriting_events_is_caught_even_re_signing(bundles: Bundles) -> None:
    def flip_event_byte(rows: list[bytes], rng: random.Random) -> list[bytes]:
        i = rng.randrange(len(rows))
        row = bytearray(rows[i])
        row[rng.randrange(len(row) - 1)] ^= rng.randrange(1, 128)  # keep the newline
        rows[i] = bytes(row)
        return rows

    def delete(rows: list[bytes], rng: random.Random) -> list[bytes]:
        del rows[rng.randrange(len(rows))]
        return rows

    def swap(rows: list[bytes], rng: random.Random) -> list[bytes] | None:
        i, j = rng.sample(range(len(rows)), 2)
        rows[i], rows[j] = rows[j], rows[i]
        return rows

    def truncate(rows: list[bytes], rng: random.Random) -> list[bytes]:
        return rows[: rng.randrange(len(rows))]

    def insert(rows: list[bytes], rng: random.Random) -> list[bytes]:
        rows.insert(rng.randrange(len(rows) + 1), rng.choice(rows))
        return rows

    for seed, change in enumerate((flip_event_byte, delete, swap, truncate, insert), 10):
        _resigned_event_tamper(bundles, bundles.full, seed, change)
        _resigned_event_tamper(bundles, bundles.partial, seed + 100, change)


def test_an_operator_rewriting_a_proof_is_caught(bundles: Bundles) -> None:
    original = members(bundles.partial)
    rng = random.Random(20)
    for _ in range(TRIALS):
        rows = lines(original[layout.PROOFS])
        i = rng.randrange(len(rows))
        proof = orjson.loads(rows[i])
        if proof["path"] and rng.random() < 0.7:
            j = rng.randrange(len(proof["path"]))
            proof["path"][j] = rng.randbytes(32).hex()
        else:
            proof["leaf_index"] += rng.choice([-1, 1])
        rows[i] = orjson.dumps(proof, option=orjson.OPT_SORT_KEYS) + b"\n"
        files = resign({**original, layout.PROOFS: b"".join(rows)}, bundles.key)
        assert bundles.code(repack(files)) is Failure.INCLUSION


def test_tampering_reports_the_first_bad_record(bundles: Bundles, tmp_path: Path) -> None:
    files = members(bundles.full)
    first, second = layout.events_part(1), layout.events_part(2)
    rows = lines(files[first])
    del rows[2]
    resigned = resign({**files, first: b"".join(rows)}, bundles.key)
    verdict = verify_bundle(repack(resigned), bundles.trusted)
    assert verdict.problem is not None
    assert verdict.summary() == (
        f"FAILED [13 chain] {first} line 3 (seq 4): seq 3 is missing (found seq 4)"
    )
    unsigned = {**files, first: b"".join(rows)}
    verdict = verify_bundle(repack(unsigned), bundles.trusted)
    assert verdict.summary().startswith(
        f"FAILED [11 file digest] {first} line 3 (seq 4): its SHA-256 is not the "
        "manifest's; first bad record: seq 3 is missing"
    )
    # Across parts: the first event of a part must follow the last of the part before.
    rows = lines(files[second])
    resigned = resign({**files, second: b"".join(rows[1:])}, bundles.key)
    assert verify_bundle(repack(resigned), bundles.trusted).summary() == (
        f"FAILED [13 chain] {second} line 1 (seq {FULL_PART + 2}): seq {FULL_PART + 1} is "
        f"missing (found seq {FULL_PART + 2})"
    )
    # And a record named by its event's seq and hash in its part of the records.
    records = lines(files[layout.requests_part(1)])
    edited = records[0].replace(b'"seq":', b'"seq":1', 1)
    resigned = resign({**files, layout.requests_part(1): b"".join([edited, *records[1:]])},
                      bundles.key)  # fmt: skip
    assert verify_bundle(repack(resigned), bundles.trusted).summary().startswith(
        f"FAILED [12 record hash] {layout.requests_part(1)} line 1: its ledger event is not in "
        f"{first} (or the records are not in ledger order)"
    )


def test_a_bundle_of_another_format_or_with_a_part_missing_is_refused(bundles: Bundles) -> None:
    files = members(bundles.full)

    def older(manifest: dict[str, object]) -> None:
        manifest["format"] = "warden-export-v1"

    verdict = verify_bundle(repack(resign(files, bundles.key, older)), bundles.trusted)
    assert verdict.summary() == (
        f"FAILED [10 manifest signature] manifest.json: signed, but unusable: not a "
        f"{layout.FORMAT} manifest (its format is 'warden-export-v1')"
    )
    # A part taken out of the zip and of the signed manifest: the numbering gives it away.
    for name in (layout.events_part(1), layout.requests_part(1)):
        kept = {n: data for n, data in files.items() if n != name}

        def unlist(manifest: dict[str, object], name: str = name) -> None:
            del manifest["files"][name]  # type: ignore[attr-defined]

        verdict = verify_bundle(repack(resign(kept, bundles.key, unlist)), bundles.trusted)
        assert verdict.summary().startswith(f"FAILED [11 file digest] the bundle has no {name}")


def test_a_bad_event_inside_any_part_is_named_in_a_partial_bundle(bundles: Bundles) -> None:
    """Every line of every part of the ledger, changed by the key's holder: the verdict names
    that part and line, whether the part goes on with the run before it or not."""
    files = members(bundles.partial)
    for name in _events_parts(files):
        rows = lines(files[name])
        for i, row in enumerate(rows):
            edited = row.replace(b'"kind":"', b'"kind":"x', 1)
            changed = {**files, name: b"".join([*rows[:i], edited, *rows[i + 1 :]])}
            verdict = verify_bundle(repack(resign(changed, bundles.key)), bundles.trusted)
            assert verdict.summary().startswith(
                f"FAILED [12 record hash] {name} line {i + 1}: the event does not hash"
            ), verdict.summary()
