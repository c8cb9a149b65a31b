"""Offline verification of an export bundle: no database, no network, only the bundle and keys.

`verify_bundle(bundle, [public_key], pin=None)` checks, in this order:

1. the manifest's Ed25519 signature under a key you trust (`manifest.sig`; the bundle's own
   `public-key.pem` is never used to decide), and that it is a `layout.FORMAT` manifest .. exit 10
2. every signed head the bundle names: key id and signature ............. exit 15
3. the zip holds exactly the manifest's files, each with its SHA-256 and size; the parts of
   the ledger and of the request records are numbered 1, 2, 3 ... without a gap .. exit 11
4. each ledger event: its line carries the canonical bytes of an event of this project
   (RFC 8785, re-encoded and compared byte for byte), and SHA-256(prev_hash || those bytes)
   is its hash; each request record names its event (seq and hash: `layout.ledger_reference`),
   is in the requests part of its event's part, in ledger order, and agrees with the event
   (trace, fingerprint, models, outcome, ...); the `erased` markers are those the ledger's
   `erasure` events imply ................................................ exit 12
5. the chain: full scope — seq 1, 2, 3 ... each linked to the one before, across the parts,
   up to the anchor head's size; partial scope — increasing seqs, each run of consecutive
   ones linked ............................................................ exit 13
6. the Merkle tree: full scope — the events give the anchor's root; partial scope — the last
   event of each run has an RFC 6962 inclusion proof against the anchor ... exit 14
7. the manifest's counts: records per file (lines, Parquet rows), events, erased ... exit 16
8. consistency: every earlier head's proof to the anchor; with `pin` (a head you kept from
   an earlier export), that the log you saw then is a prefix of this one ... exit 17

The first failure decides the exit code; its message names the file, line and seq. "First"
is in file order, whichever process found it: events before records, then by part, then by
line (a bad hash before a bad link on the same line). A file whose digest differs is reported
as such (11), with the first bad record found in it, if any.

What passing means. Without a pin: the bundle is what the holder of the signing key signed,
and internally consistent — not that the log was never rewritten, since the holder of the
key can rewrite it and sign again. With a pin: additionally, everything recorded up to the
pinned head is in this log unchanged.

How the work is split. A part of the ledger and its part of the request records are one unit
of work (`part_check`), done whole by one process, which opens the zip itself: it inflates
and hashes both members, frames every event line, checks every hash and canonical form, the
chain inside the part and each record against its event (`fast_path`), and hands back a
small summary — the seqs and hashes at the part's ends, the roots of the Merkle subtrees the
part fills, the erasure facts, its first problem. This process then links the parts' chains
end to end, matches erasures with the records they mark across parts (`join`), builds the
root from the subtrees and checks the proofs (`tree`), the heads, counts and pin. Bundles
above `PARALLEL_BYTES` are checked by worker processes this way, one unit at a time (`pool`);
smaller ones in this process, the same way.

The verifier needs no database and no network: nothing here imports SQLAlchemy, the store or
the service (a test holds it to that). The modules, each owning one thing:

    verifier.py      `verify_bundle`: the order of the checks, the conclusion, the counts
    verdict.py       `Failure` (the exit statuses), `Problem`, `Verdict`
    manifest.py      the signed manifest, and the parts among the files it lists
    members.py       a zip member inflated a block at a time, without zipfile's CRC
    framing.py       a member as lines, hashed and counted as read; `FileCheck`
    units.py         the units of work (`Part`) and what they hand back (`PartResult`)
    part_check.py    one part's check, whole, in one process
    fast_path.py     the hot loop: every event line and request record of a part
    slow_path.py     a line the fast path did not pass, checked again to say why
    join.py          the parts joined: the chain across parts, erasures, the first problem
    tree.py          the Merkle tree from the parts' subtrees; the root, proofs, pin root
    signed_heads.py  the keys, each head's signature, consistency proofs, the pin
    plain.py         every other file: digest and record count
    pool.py          the worker processes, or this one
"""

from __future__ import annotations

from app.audit.verify.pool import PARALLEL_BYTES
from app.audit.verify.verdict import Failure, Problem, Verdict
from app.audit.verify.verifier import verify_bundle

__all__ = ["PARALLEL_BYTES", "Failure", "Problem", "Verdict", "verify_bundle"]
