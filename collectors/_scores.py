"""Feedback on a recorded request: `score()` sends it as a `warden.score` root span (a trace
of its own) through the same export pipeline and spool as the requests, so it survives the
service being away just as they do."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from typing import Any

from collectors import _client
from collectors import conventions as wire
from collectors._record import RequestRecord
from collectors.errors import ConfigurationError

log = logging.getLogger("warden.collectors")

SOURCES = ("human", "user", "automatic")
_REQUEST_ID = re.compile(r"[0-9a-f]{32}")


def score(
    request_id: str,
    name: str,
    value: bool | int | float | str,
    *,
    source: str = "automatic",
    author: str | None = None,
    comment: str | None = None,
    correction: Mapping[str, Any] | None = None,
) -> None:
    """Record feedback on a request: a number, true/false, or a category (text).

    `request_id` is the request's id (`Request.trace_id`: 32 hex digits). `source` says who
    gave it: `human` (an operator), `user` (the person served) or `automatic` (a check in
    code); `correction` is, for a human correction, the action the person chose instead.
    The service checks the score against the project's score config of `name`; one that
    fails it, or names a request the project does not have, is refused there and counted in
    `collectors.stats()["rejected"]`. Like every record, it is sent in the background and
    never raises into the caller, except `ConfigurationError` for a call that cannot be
    right (a value of another type, an unknown source, a malformed id).

    >>> with collectors.request({"text": "a room for 6"}) as req:            # doctest: +SKIP
    ...     req.set_outcome("booked")
    >>> collectors.score(req.trace_id, "plan_success", True)                  # doctest: +SKIP
    >>> collectors.score(req.trace_id, "correction", True, source="human",   # doctest: +SKIP
    ...                  author="ops-7", correction={"action": "room-2"})
    """
    record = _score_record(request_id, name, value, source, author, comment, correction)
    client = _client.active()
    if client is None or client.pipeline is None:
        return
    try:
        if client.config.fail_closed:
            if not client.pipeline.submit_durable(record):
                log.warning("Warden could not make a score durable; it is dropped")
        else:
            client.pipeline.submit(record)
    except Exception:
        log.exception("Warden could not record a score")


def _score_record(
    request_id: Any,
    name: Any,
    value: Any,
    source: Any,
    author: Any,
    comment: Any,
    correction: Any,
) -> RequestRecord:
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id.lower()):
        raise ConfigurationError(
            f"score(): request_id must be a request's id (32 hex digits, `req.trace_id`), "
            f"not {request_id!r}"
        )
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"score(): name must be a non-empty text, not {name!r}")
    if source not in SOURCES:
        raise ConfigurationError(
            f"score(): source must be one of {', '.join(SOURCES)}, not {source!r}"
        )
    for label, text in (("author", author), ("comment", comment)):
        if text is not None and not isinstance(text, str):
            raise ConfigurationError(f"score(): {label} must be a text or None")
    record = RequestRecord(wire.SCORE_SPAN)
    attrs = record.attributes
    attrs[wire.SCORE_REQUEST] = request_id.lower()
    attrs[wire.SCORE_NAME] = name
    attrs[wire.SCORE_VALUE] = _wire_value(value)
    attrs[wire.SCORE_SOURCE] = source
    if author is not None:
        attrs[wire.SCORE_AUTHOR] = author
    if comment is not None:
        attrs[wire.SCORE_COMMENT] = comment
    if correction is not None:
        attrs[wire.SCORE_CORRECTION] = _correction_json(correction)
    return record


def _wire_value(value: Any) -> bool | float | str:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        # Numbers travel as doubles: an int beyond 64 bits could not be encoded at all.
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number):
            return number
        raise ConfigurationError(f"score(): a numeric value must be finite, not {value!r}")
    raise ConfigurationError(
        "score(): value must be a number, true/false or a category (text), "
        f"not {type(value).__name__}"
    )


def _correction_json(correction: Any) -> str:
    if not isinstance(correction, Mapping):
        raise ConfigurationError(
            "score(): correction must be a mapping (the action chosen instead), "
            f"not {type(correction).__name__}"
        )
    try:
        return json.dumps(dict(correction), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"score(): correction must be JSON: {exc}") from None
