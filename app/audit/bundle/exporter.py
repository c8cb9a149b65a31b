"""One export, start to end: the scope streamed into staging files, then zipped and signed.

`export_bundle` prepares the log (`anchor`), streams the ledger's events in seq order a chunk
at a time (`selection`) — every event up to the anchor in a full scope, the scope's own in a
partial one, governance events woven in by seq — writing each event line (`ledger_parts`)
and the records of the requests in scope beside it (`scope_records`); then the requests
stored before the ledger began, the model versions, drift reports, proofs and heads; then
the report, the manifest and its signature (`manifest`). Memory holds one chunk of events,
one Parquet row group per table, the Merkle tree of the log (~70 bytes an event) and the set
of exported request ids.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from app.audit import chain, heads, layout
from app.audit.bundle.anchor import LedgerMismatch, prepare_log
from app.audit.bundle.facts import Facts
from app.audit.bundle.ledger_parts import LedgerParts
from app.audit.bundle.manifest import build_manifest, manifest_bytes, write_zip
from app.audit.bundle.records import hash_file
from app.audit.bundle.scope import Scope
from app.audit.bundle.scope_records import ScopeRecords
from app.audit.bundle.selection import Selection, project_id
from app.errors import NotFound
from app.store.dialect import consistent_snapshot
from app.store.engine import read_connection

Progress = Callable[[int, int], None]


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
    from app.audit.bundle import report

    started = time.perf_counter()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        exporter = _Exporter(engine, scope, staging, key, progress, list(prove_from), part_events)
        facts = exporter.run()
        facts.created_at = chain.format_time(datetime.now(UTC))
        facts.key_id = heads.key_id(key.public_key())
        html = report.render_html(facts)
        (staging / layout.REPORT_HTML).write_text(html, encoding="utf-8")
        facts.files.append(hash_file(staging, layout.REPORT_HTML))
        (staging / layout.REPORT_PDF).write_bytes(report.render_pdf(facts))
        facts.files.append(hash_file(staging, layout.REPORT_PDF))
        manifest = build_manifest(facts, facts.policy_rows())
        signed = manifest_bytes(manifest)
        partial = out.with_name(out.name + ".partial")
        write_zip(partial, signed, key, staging, facts, compresslevel)
        partial.replace(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    whole = hash_file(out.parent, out.name)
    return ExportResult(
        path=out,
        manifest=manifest,
        manifest_bytes=signed,
        report_html=html,
        facts=facts,
        seconds=time.perf_counter() - started,
        bytes=whole.bytes,
        sha256=whole.sha256,
    )


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
        part_events: int,
    ) -> None:
        self.engine = engine
        self.scope = scope
        self.staging = staging
        self.key = key
        self.progress = progress
        self.prove_from = prove_from
        self.part_events = part_events

    def run(self) -> Facts:
        scope = self.scope
        with read_connection(self.engine) as conn:
            found = project_id(conn, scope.project)
        if found is None:
            raise NotFound(f"no project {scope.project!r}; see `warden project list`")
        log = prepare_log(self.engine, found, scope.project, self.key)
        anchor = log.anchor
        with read_connection(self.engine) as conn:
            consistent_snapshot(conn)  # one snapshot for the whole export
            selection = self.selection = Selection(conn, found, scope, anchor)
            governance = selection.governance_events()
            first_event = selection.first_event_time()
            full = not scope.filtered and (
                scope.since is None or first_event is None or first_event >= scope.since
            )
            facts = self.facts = Facts(
                scope, layout.FULL if full else layout.PARTIAL, anchor, found
            )
            facts.policy_sets = [
                {"seq": e.seq, "created_at": chain.format_time(e.created_at), "payload": e.payload}
                for e in selection.policy_sets
            ]
            self.records = ScopeRecords(
                conn, self.staging, scope, facts, selection.request_columns, selection.erased,
                self.part_events,
            )  # fmt: skip
            self.ledger = LedgerParts(self.staging, facts, self.records.requests, self.part_events)
            if full:
                self._stream(1, anchor.tree_size, full=True, governance=[])
            else:
                lo, hi = selection.request_event_window()
                self._stream(lo, hi, full=False, governance=governance)
            self._requests_before_ledger(first_event)
            self.records.close()
            self.records.drift_reports()
            self.records.retention(first_event)
        facts.heads_in_range = [
            h for h in [*log.earlier, anchor] if selection.in_period(h.signed_at)
        ]
        facts.earlier_heads = len(log.earlier)
        self.ledger.close(log, self.prove_from)
        return facts

    def _stream(self, lo: int, hi: int, *, full: bool, governance: list[Any]) -> None:
        """Events lo..hi in seq order (a full scope: each checked to link to the one before),
        the `governance` events woven in by seq, and the records of the requests in scope
        beside their events."""
        selection, records, ledger = self.selection, self.records, self.ledger
        total = max(hi - lo + 1, 0)
        done = 0
        pending = iter(governance)
        waiting = next(pending, None)
        prev = chain.GENESIS
        for part in selection.events(lo, hi, requests_only=not full) if total else ():
            matched = selection.match(part, records.covered)
            traces = [matched[r.seq].trace_id for r in part if r.seq in matched]
            inputs = selection.input_states(traces)
            for row in part:
                while waiting is not None and waiting.seq < row.seq:
                    ledger.write(waiting)
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
                    reference = ledger.write(row)
                    self.facts.chain_checked += full
                if request is not None:
                    state = inputs.get(request.trace_id, "absent")
                    records.write_request(request, (row, reference), state)
            records.write_related(traces)
            done += len(part)
            if self.progress is not None:
                self.progress(done, total)
        while waiting is not None:
            ledger.write(waiting)
            waiting = next(pending, None)

    def _requests_before_ledger(self, ledger_start: datetime | None) -> None:
        """Requests in scope stored before the ledger began: exported with `ledger` null;
        those stored since without an event up to the anchor are counted as left out."""
        selection, records, facts = self.selection, self.records, self.facts
        for rows, left_out in selection.requests_before_ledger(ledger_start, records.covered):
            facts.left_out += left_out
            if not rows:
                continue
            inputs = selection.input_states([r.trace_id for r in rows])
            for request in rows:
                records.write_request(request, None, inputs.get(request.trace_id, "absent"))
                facts.uncovered += 1
            records.write_related([r.trace_id for r in rows])
