"""Export bundles: the records of a scope, their ledger events and proofs, signed, in one zip.

A scope is a project, a period [since, until) of request start times, and optionally one
model (name, or name and version) and one subject. The bundle (layout in
`app/audit/layout.py`, shared with the verifier) holds:

- the records of the requests in scope (and their spans, world-model states, planner
  decisions, policy evaluations, reviews, scores, model stages; the model versions they
  name), as JSON Lines and Parquet; each request names its ledger event (seq and hash);
- the ledger: in a **full** scope (no model, no subject, a period open at the start) every
  event from seq 1 up to the anchor head, so the verifier replays the chain and recomputes
  the root; in a **partial** scope only the selected events — the requests' own, the
  governance events of the period (`policy_set.changed`, promotions, ...), the `erasure`
  events — with RFC 6962 inclusion proofs against the anchor head (`ledger/proofs.jsonl`,
  one per run of consecutive seqs: the chain links each event of a run to its last);
- per request, whether it is `erased`: its ledger event names its subject by a pseudonym
  (`subject_keys`), and an `erasure` event names the pseudonyms whose key was destroyed;
  and the state of its retained input (`input`: retained, erased or absent);
- the anchor: the newest signed tree head, signed now over the whole log if no stored head
  covers it yet; every earlier head with a consistency proof to it (`ledger/heads.jsonl`),
  so an auditor who kept any of them can check the log was only appended to;
- drift reports of the period, a report for people (HTML and PDF), and `manifest.json`
  (scope, counts, ledger range, heads, policy sets in force, lineage, the SHA-256 of every
  file) signed with the audit signing key (`manifest.sig`).

The ledger and the request records are written in numbered parts of `layout.PART_EVENTS`
events (the records of the requests whose events are in events part k make requests part k),
so a verifier can check the parts in parallel.

The modules, each owning one thing:

    scope.py          `Scope`: what an export takes
    anchor.py         the log as the export sees it: the anchor head, earlier heads, the tree
    selection.py      which events and requests a scope takes (the queries)
    ledger_parts.py   the event lines in parts, the inclusion proofs, the heads' proofs
    scope_records.py  the request records and the rows that belong to them
    records.py        `TableSink`: a table as JSON Lines and Parquet, hashed as written
    facts.py          what the export gathers on the way, for the manifest and the report
    report.py         the report for people (HTML and PDF)
    manifest.py       the manifest, its signature, the zip
    exporter.py       `export_bundle`: one export, start to end
"""

from __future__ import annotations

from app.audit.bundle.anchor import LedgerMismatch
from app.audit.bundle.exporter import ExportResult, Progress, export_bundle
from app.audit.bundle.facts import Facts
from app.audit.bundle.scope import Scope, parse_model

__all__ = [
    "ExportResult",
    "Facts",
    "LedgerMismatch",
    "Progress",
    "Scope",
    "export_bundle",
    "parse_model",
]
