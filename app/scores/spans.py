"""A `warden.score` root span (docs/conventions.md, "Scores") as a score to record. Pure: the
ingest normalisation calls it for root spans that carry `warden.score.request`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from app.scores.validation import ScoreFields
from collectors import conventions as wire

# What a score span without a source is taken for: OTel senders other than the SDK.
DEFAULT_SOURCE = "automatic"


@dataclass(frozen=True, slots=True)
class SpanScore:
    """A score as a span carried it, not yet checked against the project's config."""

    key: str  # "<trace>:<span>": a resent span makes the same key
    request_id: str
    fields: ScoreFields
    end_time_unix_nano: int


def score_from_span(span: dict[str, Any], attrs: dict[str, Any]) -> SpanScore:
    """The score a root span row (as `app.ingest.normalise.span_rows` makes it) carries."""
    return SpanScore(
        key=f"{span['trace_id']}:{span['span_id']}",
        request_id=str(attrs[wire.SCORE_REQUEST]).strip().lower(),
        fields=ScoreFields(
            name=attrs.get(wire.SCORE_NAME),
            value=attrs.get(wire.SCORE_VALUE),
            source=attrs.get(wire.SCORE_SOURCE, DEFAULT_SOURCE),
            author=attrs.get(wire.SCORE_AUTHOR),
            comment=attrs.get(wire.SCORE_COMMENT),
            correction=_json_object(attrs.get(wire.SCORE_CORRECTION)),
        ),
        end_time_unix_nano=span["end_time_unix_nano"],
    )


def _json_object(value: Any) -> Any:
    """The correction travels as JSON text; what is not JSON stays as it came (and fails the
    check, which wants an object)."""
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value
