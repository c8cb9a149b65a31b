"""The bundle's ledger files: the event lines in parts, `ledger/proofs.jsonl`, `ledger/heads.jsonl`.

Every event is written from the row the database holds, re-checked on the way: its canonical
bytes (section 1 of docs/audit.md) must hash, after its `prev_hash`, to its stored hash, or
the export stops (`LedgerMismatch`). An events part holds `part_events` lines; a full part
starts the next, and the next requests part with it, so that requests part k holds the
records of the events in events part k (`layout`). In a partial scope each run of
consecutive seqs written gets one inclusion proof of its last event against the anchor; every
earlier head (and each `--prove-from` size) gets a consistency proof to it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

import orjson

from app.audit import fastjcs, heads, jcs, layout
from app.audit.bundle.anchor import LedgerMismatch, Log
from app.audit.bundle.facts import Facts
from app.audit.bundle.records import HashingWriter, PartWriter, TableSink, utc_text
from app.audit.heads import TreeHead

_SORTED = orjson.OPT_SORT_KEYS
_sha256 = hashlib.sha256


class LedgerParts:
    """The events parts of one export, open until `close` writes the proofs and heads."""

    def __init__(self, staging: Path, facts: Facts, requests: TableSink, part_events: int) -> None:
        self.staging = staging
        self.facts = facts
        self.requests = requests  # its parts follow the events parts
        self.part_events = part_events
        self.out = PartWriter(staging, layout.events_part)
        self.proof_runs: list[tuple[int, int]] = []  # partial scope: (first, last) seqs
        self._kinds: dict[str, bytes] = {}
        self._project_part = b',"project":' + jcs.utf8(
            encode_basestring(facts.scope.project)
        ) + b',"seq":'  # fmt: skip

    def canonical(self, row: Any) -> bytes:
        """The canonical bytes of a stored event, checked against its hash.

        The ledger stores a payload as its canonical JSON, so on SQLite the stored text is
        used as it is; a database that reformats JSON (PostgreSQL's JSONB) costs a re-encoding.
        """
        prev, stored = bytes(row.prev_hash), bytes(row.hash)
        kind = self._kinds.get(row.kind)
        if kind is None:
            kind = self._kinds[row.kind] = jcs.utf8(encode_basestring(row.kind))
        head = b'{"created_at":"' + utc_text(row.created_at).encode() + b'","kind":' + kind
        tail = self._project_part + str(row.seq).encode() + b"}"
        body: bytes = row.payload_text.encode("utf-8")
        canonical = head + b',"payload":' + body + tail
        if _sha256(prev + canonical).digest() == stored:
            return canonical
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
        return canonical

    def write(self, row: Any) -> bytes:
        """One line of the ledger's parts, and the run it extends; returns the reference a
        request record names it by. A full part starts the next, and the next requests part
        with it."""
        canonical = self.canonical(row)
        if self.out.lines == self.part_events:
            self.out.next_part()
            self.requests.next_part()
        event_hash = bytes(row.hash)
        self.out.write_line(layout.event_line(canonical, event_hash, bytes(row.prev_hash)))
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

    def close(self, log: Log, prove_from: Sequence[int]) -> None:
        """The last part closed; the proofs (partial scope) and the heads written."""
        facts = self.facts
        facts.files.extend(self.out.close())
        facts.counts["ledger_events"] = facts.events
        if facts.mode == layout.PARTIAL:
            self._proofs(log)
        self._heads(log, prove_from)

    def _proofs(self, log: Log) -> None:
        anchor, tree = log.anchor, log.tree
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
        self.facts.files.append(out.close(len(self.proof_runs)))
        self.facts.counts["proofs"] = len(self.proof_runs)

    def _heads(self, log: Log, prove_from: Sequence[int]) -> None:
        anchor, tree = log.anchor, log.tree
        signed: dict[int, TreeHead | None] = {h.tree_size: h for h in log.earlier}
        for size in prove_from:
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
        self.facts.files.append(out.close(out.lines))
        self.facts.counts["heads"] = out.lines
