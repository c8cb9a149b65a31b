"""The slow path of a part's check: a line the fast path (`fast_path`) did not pass, checked
again step by step, to say why it fails — or to pass it after all, when the fast checks were
only unsure (JSON whose canonical form orjson does not write, a record whose members are in
another order than the exporter writes them).
"""

from __future__ import annotations

from typing import Any

import orjson

from app.audit import fastjcs, layout
from app.audit.verify.units import Part, PartResult
from app.audit.verify.verdict import Failure, Problem, Stop

START = "start_time_unix_nano"


def record_of(body: bytes, name: str, number: int) -> dict[str, Any] | Problem:
    """A request record's line (without its reference) parsed, or why it is not one."""
    try:
        record = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Problem(Failure.RECORD_HASH, "not a JSON record", name, number)
    if type(record) is not dict or type(record.get("erased")) is not bool:
        return Problem(Failure.RECORD_HASH, "not a request record", name, number)
    return record


def canonical_event(canonical: bytes, name: str, line: int) -> Any:
    """The value of bytes the fast check could not pass: `fastjcs` decides."""
    try:
        return fastjcs.loads_canonical(canonical)
    except ValueError as error:
        raise Stop(
            Problem(Failure.RECORD_HASH, f"the event is not canonical JSON ({error})", name, line)
        ) from None


def not_an_event(value: Any, name: str, line: int) -> Stop:
    seq = value.get("seq") if isinstance(value, dict) else None
    return Stop(
        Problem(Failure.RECORD_HASH, "the line is not an event of the ledger's form", name,
                line, seq if type(seq) is int else None)
    )  # fmt: skip


def disagreement(record: dict[str, Any], payload: dict[str, Any]) -> str | None:
    """The first member a request record and its ledger event give differently (a member
    one of them lacks is not compared)."""
    for member in layout.REQUEST_MEMBERS:
        if member in payload and member in record and payload[member] != record[member]:
            return member
    start = payload.get(START)
    if start is not None and start != str(record.get(START)):
        return START
    return None


def record_problem(
    part: Part,
    result: PartResult,
    body: bytes,
    number: int,
    seq: int,
    kind: str,
    payload: dict[str, Any],
) -> Problem | None:
    """A request record (without its reference) against its event's payload; what it holds
    (erased, its subject) noted in `result` when it passes."""
    record = record_of(body, part.requests, number)
    if isinstance(record, Problem):
        return record

    def bad(detail: str) -> Problem:
        return Problem(Failure.RECORD_HASH, detail, part.requests, number, seq)

    if "ledger" in record:
        return bad("the record names its ledger event twice")
    if kind != layout.REQUEST_KIND:
        return bad("its ledger event is not a request event")
    if payload.get("trace_id") != record.get("trace_id"):
        return bad("its ledger event names another request")
    member = disagreement(record, payload)
    if member is not None:
        return bad(f"its {member} is not the one its ledger event records")
    subject = payload.get(layout.SUBJECT_MEMBER)
    if type(subject) is not str or not subject:
        subject = None
    if record["erased"]:
        result.erased_records += 1
        result.claims.append((number, seq, subject))
    elif subject is not None and subject not in result.subjects:
        result.subjects[subject] = (number, seq)
    return None
