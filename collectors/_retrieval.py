"""`collectors.retrieval()`: a retrieval step (RAG) of the current request, recorded as
OpenTelemetry's GenAI retrieval span with the documents it returned (docs/conventions.md,
"Retrieval")."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Status

from collectors import conventions as wire
from collectors._record import ChildSpan
from collectors._scope import current_record

# The keys a retrieved document may carry on the wire.
_DOCUMENT_KEYS = ("id", "score", "version", "digest")


class Retrieval:
    """Handle of `collectors.retrieval()`: record the documents when they arrive."""

    __slots__ = ("_span",)

    def __init__(self, span: ChildSpan | None) -> None:
        self._span = span

    def record(self, documents: Iterable[Mapping[str, Any]]) -> None:
        """The documents in rank order, each `{"id", "score"?, "version"?, "digest"?}`.

        >>> with collectors.retrieval("rooms-faq") as step:  # doctest: +SKIP
        ...     step.record([{"id": "faq-12", "score": 0.83, "version": "4"}])
        """
        if self._span is None:
            return
        kept = []
        for doc in documents:
            entry = {k: doc[k] for k in _DOCUMENT_KEYS if doc.get(k) is not None}
            if "id" not in entry:
                raise ValueError(f"a retrieved document needs an 'id': {dict(doc)!r}")
            entry["id"] = str(entry["id"])
            if "score" in entry and not math.isfinite(float(entry["score"])):
                del entry["score"]
            kept.append(entry)
        self._span.attributes[wire.GEN_AI_RETRIEVAL_DOCUMENTS] = json.dumps(kept)


@contextmanager
def retrieval(data_source: str, query: str | None = None) -> Iterator[Retrieval]:
    """Record a retrieval step of the current request: the index searched, the documents
    found (their ids, versions or digests, and scores), and its latency. The query text is
    sent only when given.

    >>> with collectors.retrieval("rooms-faq@2026-11") as step:
    ...     hits = index.search(question, k=3)  # doctest: +SKIP
    ...     step.record([{"id": h.id, "version": h.version, "score": h.score} for h in hits])
    """
    record = current_record()
    span = None
    if record is not None:
        span = record.child(wire.RETRIEVAL_OPERATION)
        span.attributes.update(
            {wire.GEN_AI_OPERATION_NAME: wire.RETRIEVAL_OPERATION,
             wire.GEN_AI_DATA_SOURCE_ID: data_source}
        )  # fmt: skip
        if query is not None:
            span.attributes[wire.GEN_AI_RETRIEVAL_QUERY_TEXT] = query
    try:
        yield Retrieval(span)
    except BaseException as exc:
        if span is not None:
            span.status = (Status.STATUS_CODE_ERROR, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if span is not None:
            span.end_ns = time.time_ns()
