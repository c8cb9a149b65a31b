"""The fast path of the chain check: every event line of one part of the ledger, and each
request record of its requests part with its event, in one pass.

This is where a verifier spends its time (a million records: 31 parts, about a million event
lines and as many records), so it is written for speed; what it checks per event line:

1. the frame, `{"event":<canonical>,"hash":"<64 hex>","prev_hash":"<64 hex>"}`, looked at
   by slices at fixed offsets from the line's end (the cheapest way, as measured);
2. the hash: SHA-256(prev_hash || canonical) is the stored hash, compared as hex bytes;
   when the line's `prev_hash` is the stored hash of the line before (the common case), the
   digest computed for that line is reused, with no hex decoding;
3. the canonical form (RFC 8785): orjson's re-encoding of the parsed event is the line's
   bytes; a block is scanned once (`fastjcs.doubts`) for bytes where orjson's output might
   not be JCS's (an integral or exponent double, a four-byte UTF-8 sequence), and those
   lines, or any line orjson does not give back byte for byte, are decided by `fastjcs`;
4. the event's form: exactly the members of `chain.FIELDS`, a positive int seq, a kind, a
   time in the ledger's format, an object payload, and the bundle's project;
5. the chain inside the part: full scope, seq n+1 after seq n, linked to it; partial scope,
   increasing seqs, each run of consecutive seqs linked (a run's first link must be a hash);
6. what other parts need: the event hashes (full scope, for the Merkle subtrees the part
   fills), the pseudonyms `erasure` events name, the runs (partial scope).

And per request record (records are in the order of their events and end with their
reference, `layout.ledger_reference`, so pairing is comparing bytes): the record that ends
with this event's reference is parsed without it and must agree with the event's payload
on the members they share (`layout.REQUEST_MEMBERS`, one `itemgetter` call for all) and
the start time; its `erased` marker and subject are noted for the erasure check across
parts. A record that pairs with no event is a problem.

How it is written, and why: one function, one loop, no call of ours per line (records come
from a generator, resumed once a record; `canonical_event` and `record_problem` run only
for a doubtful or failing line); the functions and attributes used per line are bound to
locals before the loop (an attribute look-up per line costs); the frame is checked by
slices at fixed offsets and the hash compared as hex bytes, so a linked line is never decoded to
text; a line is the slice `bytes.split` made of its block, and only its canonical bytes are
sliced out again, to hash and to compare (a line split across two blocks is joined once, by
`framing.Stream`). What passes is checked once, inline; what does not is checked again,
slowly (`slow_path`), to say why. A failure of an event raises `Stop` (the part's first
problem); a record's problem stops the records, not the events, since an event's problem
would come first. Keep it so: an added call or copy per line shows in `bench/audit.py`'s
verify figures.
"""

from __future__ import annotations

import binascii
import hashlib
import operator
import re
from collections.abc import Iterator

import orjson

from app.audit import chain, fastjcs, layout
from app.audit.verify.framing import Stream
from app.audit.verify.slow_path import START, canonical_event, not_an_event, record_problem
from app.audit.verify.tree import subtrees
from app.audit.verify.units import Part, PartResult
from app.audit.verify.verdict import Failure, Problem, Stop

_sha256 = hashlib.sha256
# ASCII digits only: `\d` would take any script's digits for a time's.
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_FRAME_HEAD = b'{"event":'
_FRAME_TAIL = 154  # ,"hash":"<64 hex>","prev_hash":"<64 hex>"}
_HASH_TAG = b',"hash":"'
_PREV_TAG = b'","prev_hash":"'
_FRAME_END = b'"}'
_HEX64_BYTES = re.compile(rb"[0-9a-f]{64}")
_REFERENCE = b',"ledger":{"hash":"%s","seq":%d}}'  # `layout.ledger_reference`, as it ends a line
_SHARED = operator.itemgetter("trace_id", *layout.REQUEST_MEMBERS)  # compared in one go


def check_events(
    part: Part, result: PartResult, events: Stream, records: Iterator[bytes]
) -> Problem | None:
    """Every event line of `events` and each record of `records` with its event (see the
    module docstring), noted in `result`; raises `Stop` at the first bad event, returns the
    first bad record's problem (None if every record paired with its event)."""
    failure: Problem | None = None
    name, project, full = events.name, part.project, part.full
    sha256, hexlify, fromhex = _sha256, binascii.hexlify, bytes.fromhex
    loads, dumps, options, doubts = orjson.loads, orjson.dumps, fastjcs.OPTIONS, fastjcs.doubts
    decode_errors = (orjson.JSONDecodeError, orjson.JSONEncodeError)
    record_errors = (orjson.JSONDecodeError, KeyError, TypeError)
    time_ok, shared, start_member = _TIME.fullmatch, _SHARED, START
    field_count = len(chain.FIELDS)
    request_kind, erasure_kind = layout.REQUEST_KIND, layout.ERASURE_KIND
    erased_member, subject_member = layout.ERASED_MEMBER, layout.SUBJECT_MEMBER
    reference = _REFERENCE
    claims, subjects, erased_by = result.claims, result.subjects, result.erased
    erased_records = 0
    hashes: list[bytes] = []
    record = next(records, None)
    record_number = 1
    number = last_seq = run_first = 0
    last_stored = last_digest = b""
    for block, lines, joined in events.pieces():
        # Lines where orjson's bytes might not be JCS's get the slow check (`fastjcs`).
        doubtful = {number + 1 + block.count(b"\n", 0, at) for at in doubts(block)}
        if joined and doubts(lines[0]):
            doubtful.add(number + 1)
        for line in lines:
            number += 1
            # {"event":<canonical>,"hash":"<64 hex>","prev_hash":"<64 hex>"}, offsets from
            # the end (the cheapest way to look at them, as measured)
            if (
                line[-154:-145] != _HASH_TAG
                or line[-81:-66] != _PREV_TAG
                or not line.endswith(_FRAME_END)
                or not line.startswith(_FRAME_HEAD)
                or len(line) <= len(_FRAME_HEAD) + _FRAME_TAIL
            ):
                raise Stop(Problem(Failure.RECORD_HASH, "not an event line of the "
                                   "bundle's form", name, number))  # fmt: skip
            stored, link = line[-145:-81], line[-66:-2]
            canonical = line[9:-_FRAME_TAIL]
            linked = link == last_stored
            if linked:
                prev = last_digest
            else:  # the part's first line, a run's, or a broken link (found below)
                try:
                    prev = fromhex(link.decode("ascii"))
                except ValueError:
                    prev = b""
                if len(prev) != 32:
                    raise Stop(Problem(Failure.RECORD_HASH, "the event does not hash to "
                                       "its hash", name, number))  # fmt: skip
            digest = sha256(prev + canonical).digest()
            if hexlify(digest) != stored:
                raise Stop(Problem(Failure.RECORD_HASH, "the event does not hash to its "
                                   "hash", name, number))  # fmt: skip
            try:
                event = loads(canonical)
                fast: bytes | None = dumps(event, option=options)
            except decode_errors:
                fast = None
            if fast != canonical or number in doubtful:
                event = canonical_event(canonical, name, number)
            try:  # five members, each of them there: exactly `chain.FIELDS`
                if len(event) != field_count:
                    raise KeyError("members")
                seq, kind, payload = event["seq"], event["kind"], event["payload"]
                created, owner = event["created_at"], event["project"]
                well_formed = (
                    type(seq) is int
                    and seq >= 1
                    and type(kind) is str
                    and kind
                    and time_ok(created)  # TypeError unless a string
                    and type(payload) is dict
                )
            except (KeyError, TypeError):
                well_formed = False
            if not well_formed:
                raise not_an_event(event, name, number)
            if owner != project:
                raise Stop(Problem(Failure.RECORD_HASH, "the event belongs to project "
                                   f"{owner!r}", name, number, seq))  # fmt: skip
            if not last_seq:  # the part's first event
                result.first_seq, result.first_prev = seq, link.decode("ascii", "replace")
                run_first = seq
            elif full:
                if seq != last_seq + 1:
                    what = "is missing" if seq > last_seq + 1 else "comes again"
                    raise Stop(Problem(Failure.CHAIN, f"seq {last_seq + 1} {what} (found "
                                       f"seq {seq})", name, number, seq))  # fmt: skip
                if not linked:
                    raise Stop(Problem(Failure.CHAIN, "the event does not link to the one "
                                       "before", name, number, seq))  # fmt: skip
            elif seq <= last_seq:
                raise Stop(Problem(Failure.CHAIN, f"seq {seq} comes after seq {last_seq}",
                                   name, number, seq))  # fmt: skip
            elif seq == last_seq + 1:
                if not linked:
                    raise Stop(Problem(Failure.CHAIN, "the event does not link to the one "
                                       "before", name, number, seq))  # fmt: skip
            else:  # a new run: its link is to an event not in the bundle
                if not _HEX64_BYTES.fullmatch(link):
                    raise Stop(Problem(Failure.RECORD_HASH, "not an event line of the "
                                       "bundle's form", name, number, seq))  # fmt: skip
                result.runs.append((run_first, last_seq, last_digest))
                run_first = seq
            if full:
                hashes.append(digest)
            if kind == erasure_kind:
                pseudonym = payload.get(erased_member)
                if type(pseudonym) is str and pseudonym:
                    erased_by.append(pseudonym)
            if record is not None:
                suffix = reference % (stored, seq)
                if record.endswith(suffix):
                    body = record[: -len(suffix)] + b"}"
                    try:  # `_record`'s checks, as they go when they pass
                        found = loads(body)
                        erased = found["erased"]
                        fine = (
                            type(erased) is bool
                            and "ledger" not in found
                            and kind == request_kind
                            and shared(payload) == shared(found)
                            and payload[start_member] == str(found[start_member])
                        )
                    except record_errors:
                        fine = False
                    if fine:
                        subject = payload.get(subject_member)
                        if erased:
                            erased_records += 1
                            if type(subject) is not str or not subject:
                                subject = None
                            claims.append((record_number, seq, subject))
                        elif type(subject) is str and subject and subject not in subjects:
                            subjects[subject] = (record_number, seq)
                        record = next(records, None)
                        record_number += 1
                    else:
                        problem = record_problem(
                            part, result, body, record_number, seq, kind, payload
                        )
                        if problem is None:
                            record = next(records, None)
                            record_number += 1
                        else:
                            failure, record = problem, None
            last_seq, last_stored, last_digest = seq, stored, digest
    result.events = number
    result.erased_records += erased_records
    if number:
        result.last_seq, result.last_hash = last_seq, last_digest
        if full:
            result.subtrees = subtrees(run_first - 1, hashes)
            if part.pin_size is not None and run_first <= part.pin_size <= last_seq:
                result.hashes = b"".join(hashes)
        else:
            result.runs.append((run_first, last_seq, last_digest))
    if record is not None:
        failure = Problem(
            Failure.RECORD_HASH,
            f"its ledger event is not in {name} (or the records are not in ledger order)",
            part.requests, record_number,
        )  # fmt: skip
    return failure
