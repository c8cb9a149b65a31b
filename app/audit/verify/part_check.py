"""One part's check, done whole by one process: events part k and requests part k read
through once (`framing.Stream`), every line checked (`fast_path`), and the small summary the
joining needs handed back (`units.PartResult`) with each file's digest verdict.

A worker process opens the zip itself (`check_part(part)`); this process passes the zip it
has open. A requests part after the ledger's parts holds records stored before the ledger
began: each must say so (`ledger` null), and none can be marked erased.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator

from app.audit.verify.fast_path import check_events
from app.audit.verify.framing import Stream
from app.audit.verify.members import opened
from app.audit.verify.slow_path import record_of
from app.audit.verify.units import Part, PartResult
from app.audit.verify.verdict import Failure, Problem, Stop

_NO_LEDGER = b',"ledger":null}'


def check_part(part: Part, bundle: zipfile.ZipFile | None = None) -> PartResult:
    """Everything about one part that needs no other part."""
    with opened(part.source, bundle) as opened_bundle:
        return _run(part, opened_bundle)


def _run(part: Part, bundle: zipfile.ZipFile) -> PartResult:
    result = PartResult(part.number, part.requests, part.events)
    events = Stream(bundle, part.source, part.events) if part.events is not None else None
    records = Stream(bundle, part.source, part.requests)
    problem: Problem | None = None
    record_problem: Problem | None = None
    try:
        if events is not None:
            record_problem = check_events(part, result, events, records.each_line())
        else:
            _check_unlinked(part, result, records.each_line())
    except Stop as stop:
        problem = stop.problem
    # An event's problem comes first: records are checked against the events.
    result.problem = problem or record_problem
    if events is not None:
        result.files.append(events.check(part.expected[events.name], result.problem))
    result.files.append(records.check(part.expected[records.name], result.problem))
    return result


def _check_unlinked(part: Part, result: PartResult, records: Iterator[bytes]) -> None:
    """A part of records stored before the ledger began: each `ledger` null."""
    name = part.requests
    for number, line in enumerate(records, 1):
        if not line.endswith(_NO_LEDGER):
            raise Stop(Problem(Failure.RECORD_HASH, "its ledger event is not in the "
                               "bundle's ledger (or the records are not in ledger order)",
                               name, number))  # fmt: skip
        record = record_of(line[: -len(_NO_LEDGER)] + b"}", name, number)
        if isinstance(record, Problem):
            raise Stop(record)
        if "ledger" in record or record["erased"]:
            raise Stop(Problem(Failure.RECORD_HASH, "its ledger event is not in the "
                               "bundle's ledger", name, number))  # fmt: skip
        result.uncovered += 1
