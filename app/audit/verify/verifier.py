"""`verify_bundle`: one bundle checked, in the order the package docstring gives, from the
manifest's signature to the pin; the first failure decides the verdict.

This module holds the order and the conclusion (which failure comes first, the counts);
each check is in the module that owns its concept (see the package docstring).
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.audit import heads, layout
from app.audit.heads import TreeHead
from app.audit.verify.framing import FileCheck
from app.audit.verify.join import LedgerResult
from app.audit.verify.manifest import part_names, read_manifest
from app.audit.verify.members import open_bundle
from app.audit.verify.pool import check_ledger, worker_count
from app.audit.verify.signed_heads import (
    check_pin,
    check_pin_signature,
    head_problem,
    pem_key_id,
    raw_key,
)
from app.audit.verify.units import Context, Part
from app.audit.verify.verdict import Failure, Problem, Stop, Verdict


def verify_bundle(
    bundle: str | Path | bytes,
    public_keys: Sequence[Ed25519PublicKey],
    pin: TreeHead | None = None,
    *,
    workers: int | None = None,
) -> Verdict:
    """Check a bundle (a path, or the zip's bytes) against the keys you trust.

    `pin`: a head you kept from an earlier export of this project (`heads.head_from_json`
    of its HEAD.json). `workers`: processes for large bundles (None: automatic, 0: none).

    >>> key = heads.load_public_key("warden.pub")  # doctest: +SKIP
    >>> verdict = verify_bundle("bundle.zip", [key])  # doctest: +SKIP
    >>> verdict.exit_code, verdict.summary()  # doctest: +SKIP
    (0, 'OK (operator-signed only): signed by key 21fe31dfa154a261; no pinned head: ...')
    """
    started = time.perf_counter()
    source: str | bytes = bundle if isinstance(bundle, bytes) else str(bundle)
    keys = {heads.key_id(k): k for k in public_keys}
    verdict = Verdict(problem=None)
    try:
        _verify(source, keys, pin, workers, verdict)
    except Stop as stop:
        verdict.problem = stop.problem
    verdict.seconds = time.perf_counter() - started
    return verdict


def _verify(
    source: str | bytes,
    keys: dict[str, Ed25519PublicKey],
    pin: TreeHead | None,
    workers: int | None,
    verdict: Verdict,
) -> None:
    try:
        bundle = open_bundle(source)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise Stop(Problem(Failure.FILE_DIGEST, f"not a readable zip: {error}")) from None
    with bundle:
        manifest, signer = read_manifest(bundle, keys)
        verdict.key_id = signer
        scope, ledger, files = manifest["scope"], manifest["ledger"], manifest["files"]
        verdict.project = str(scope.get("project"))
        verdict.mode = str(scope.get("mode"))
        if verdict.mode not in (layout.FULL, layout.PARTIAL):
            raise Stop(Problem(Failure.MANIFEST_SIGNATURE, "the manifest's scope has no mode",
                               layout.MANIFEST))  # fmt: skip
        problem = head_problem(ledger.get("anchor"), keys, verdict.project, layout.MANIFEST, None)
        if problem is None:
            for signed in ledger.get("heads_in_range") or []:
                problem = problem or head_problem(signed, keys, verdict.project,
                                                   layout.MANIFEST, None)  # fmt: skip
        if problem is not None:
            raise Stop(problem)
        verdict.anchor = anchor = heads.head_from_json(ledger["anchor"])
        present = set(bundle.namelist()) - layout.UNLISTED
        listed = set(files)
        if present != listed:
            missing, extra = sorted(listed - present), sorted(present - listed)
            detail = f"missing {missing}" if missing else f"not in the manifest: {extra}"
            raise Stop(Problem(Failure.FILE_DIGEST, f"the files are not the manifest's: {detail}"))
        if layout.HEADS not in files:
            raise Stop(Problem(Failure.FILE_DIGEST, f"the bundle has no {layout.HEADS}"))
        events_parts, requests_parts = part_names(files)
        bundle_bytes = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
        if isinstance(source, str):
            with bundle.open(layout.PUBLIC_KEY) as pem_file:
                if pem_key_id(pem_file.read()) != signer:
                    verdict.warnings.append(
                        "the bundle's public-key.pem is not the key that verified it; "
                        "the key you gave was used"
                    )
    if pin is not None:
        check_pin_signature(pin, keys, verdict.project)
    ctx = Context(
        source=source,
        project=verdict.project,
        mode=verdict.mode,
        files=files,
        anchor=anchor,
        keys=tuple(raw_key(k) for k in keys.values()),
        pin_size=pin.tree_size if pin is not None else None,
    )
    parts = [
        Part(
            source=source,
            number=number,
            events=events_parts[number - 1] if number <= len(events_parts) else None,
            requests=requests,
            project=verdict.project,
            full=verdict.mode == layout.FULL,
            expected={name: files[name] for name in [*events_parts[number - 1 : number], requests]},
            pin_size=ctx.pin_size,
        )
        for number, requests in enumerate(requests_parts, 1)
    ]
    special = {*events_parts, *requests_parts, layout.PROOFS, layout.HEADS}
    plain = sorted(set(files) - special)
    parallel = worker_count(source, bundle_bytes, len(parts) + len(plain), workers)
    verdict.parts, verdict.workers = len(events_parts), parallel
    with open_bundle(source) as opened:
        ledger_result, plain_checks = check_ledger(ctx, parts, plain, parallel, opened)
    _conclude(ctx, manifest, pin, ledger_result, plain_checks, verdict)


def _conclude(
    ctx: Context,
    manifest: dict[str, Any],
    pin: TreeHead | None,
    ledger: LedgerResult,
    plain: list[FileCheck],
    verdict: Verdict,
) -> None:
    checks = [*ledger.files, *plain]
    verdict.records, verdict.events = ledger.records, ledger.events
    verdict.erased, verdict.uncovered = ledger.erased_records, ledger.uncovered
    # 11: a file that is not the one signed; the first bad record in it, if one was found.
    for check in sorted(checks, key=lambda c: c.name):
        if not check.digest_ok:
            why = (
                f"cannot be read ({check.unreadable})"
                if check.unreadable
                else "its SHA-256 is not the manifest's"
            )
            if check.problem is not None:
                p = check.problem
                raise Stop(Problem(Failure.FILE_DIGEST, f"{why}; first bad record: {p.detail}",
                                   check.name, p.line, p.seq))  # fmt: skip
            raise Stop(Problem(Failure.FILE_DIGEST, why, check.name))
    # 12-14: the first bad record of the ledger and the request records.
    if ledger.problem is not None:
        raise Stop(ledger.problem)
    if ledger.head_problem is not None:
        raise Stop(ledger.head_problem)
    _check_counts(manifest, ledger, checks)
    if ledger.consistency is not None:
        raise Stop(ledger.consistency)
    if pin is not None:
        check_pin(ctx, pin, ledger)
        verdict.pinned = pin


def _check_counts(
    manifest: dict[str, Any],
    ledger: LedgerResult,
    checks: list[FileCheck],
) -> None:
    files, counts, summary = manifest["files"], manifest["counts"], manifest["ledger"]
    for check in sorted(checks, key=lambda c: c.name):
        expected = files[check.name].get("records")
        if expected is not None and expected != check.lines:
            raise Stop(Problem(Failure.COUNTS, f"the manifest says {expected} records, the file "
                               f"holds {check.lines}", check.name))  # fmt: skip
    found = {
        "requests": ledger.records,
        "ledger_events": ledger.events,
        "erased_requests": ledger.erased_records,
        "requests_without_ledger_event": ledger.uncovered,
    }
    for key, value in found.items():
        if counts.get(key) != value:
            raise Stop(Problem(Failure.COUNTS, f"the manifest counts {counts.get(key)} {key}, "
                               f"the bundle holds {value}", layout.MANIFEST))  # fmt: skip
    ranges = {"events": ledger.events, "first_seq": ledger.first_seq, "last_seq": ledger.last_seq}
    for key, found_value in ranges.items():
        if summary.get(key) != found_value:
            raise Stop(Problem(Failure.COUNTS, f"the manifest's ledger {key} is "
                               f"{summary.get(key)}, the bundle's is {found_value}",
                               layout.MANIFEST))  # fmt: skip
