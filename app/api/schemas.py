"""What only the HTTP API says: the envelopes routes wrap around the typed reads (lists,
answers made in the route), the error body, and the documented answers of non-JSON routes.

The read models themselves live beside their reads (`app.store.read_models`,
`app.registry.read_models`, ...); together they are what /openapi.json documents.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.audit.ledger.read_models import SignedHead
from app.audit.read_models import ExportStatus
from app.errors import BadRequest
from app.experiments.read_models import BundledExperiment, ExperimentOut
from app.governance.read_models import ReviewOut
from app.registry.read_models import ModelVersionSummary


class Error(BaseModel):
    """Every error of the JSON API (OTLP ingest answers a google.rpc.Status instead)."""

    detail: str = Field(description="What went wrong and what to do next")


_ERRORS = {
    400: "Invalid request: the detail names the parameter and what to change",
    401: "No API key, or an unknown or revoked one",
    403: "The API key lacks the scope this needs",
    404: "Not found in the key's project",
    409: "Conflicts with the current state: the detail says which",
    413: "The body is over the payload limit",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route for the error answers it may give, and `4XX` for the rest: a
    malformed parameter is answered 400 (app.main), never FastAPI's 422, which `4XX` keeps
    out of the document."""
    described: dict[int | str, dict[str, Any]] = {
        code: {"model": Error, "description": _ERRORS[code]} for code in codes
    }
    described["4XX"] = {"model": Error, "description": "Another client error"}
    return described


# The largest integer a database column holds (64-bit): a larger number in a query or path
# parameter is a 400 named by FastAPI, not an overflow in the driver (a 500).
SQL_INT_MAX = 2**63 - 1


def _not_a_number(value: object) -> object:
    # Pydantic reads a number as seconds since 1970; the API documents ISO 8601 times only,
    # and a number is far more often a mistake (milliseconds, a sequence number) than that.
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("write an ISO 8601 time, e.g. 2025-01-02T00:00:00Z, not a number")
    return value


# A query parameter's time: ISO 8601 only.
IsoTime = Annotated[datetime, BeforeValidator(_not_a_number)]


def check_stored_time(name: str, value: datetime | None) -> None:
    """400 for a time that nanoseconds since 1970 in a 64-bit integer cannot hold (how span
    times are stored), before a query overflows on it."""
    if value is not None and not 1678 <= value.year <= 2261:
        raise BadRequest(f"{name}: {value.isoformat()} is outside the years 1678 to 2261")


def binary(media_type: str, description: str) -> dict[str, Any]:
    """A documented answer whose body is not JSON (protobuf, .npy, zip, text)."""
    return {
        "description": description,
        "content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
    }


class Health(BaseModel):
    status: str = Field(description="`ok`, or `ready` for /readyz")


class Unavailable(BaseModel):
    status: str = Field(description="`unavailable`")
    reason: str = Field(description="The database's error, first line")


class ExportPartialSuccess(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    rejected_spans: str | None = Field(
        default=None, alias="rejectedSpans", description="int64, as a string (proto3 JSON)"
    )
    error_message: str | None = Field(default=None, alias="errorMessage")


class ExportTraceServiceResponse(BaseModel):
    """OTLP's answer in its JSON encoding; `partialSuccess` only when spans were rejected."""

    model_config = ConfigDict(populate_by_name=True)

    partial_success: ExportPartialSuccess | None = Field(default=None, alias="partialSuccess")


class BundledPolicy(BaseModel):
    policy: dict[str, Any] = Field(description="The policy's canonical form (docs/policies.md)")
    source: str = Field(description="Its YAML as written")


class PolicyBundle(BaseModel):
    hash: str = Field(description="The policy set's hash (the ETag covers it and the experiments)")
    policies: list[BundledPolicy]
    experiments: list[BundledExperiment] = Field(
        default_factory=list, description="The key's project's running experiments"
    )


class ModelVersionList(BaseModel):
    items: list[ModelVersionSummary]


class ExperimentList(BaseModel):
    items: list[ExperimentOut]


class ReviewList(BaseModel):
    items: list[ReviewOut]


class HeadList(BaseModel):
    items: list[SignedHead]


class ExportList(BaseModel):
    items: list[ExportStatus]


class PublicKey(BaseModel):
    algorithm: str = Field(description="`Ed25519`")
    key_id: str
    public_key_pem: str = Field(description="SubjectPublicKeyInfo, PEM")


class ErasureOut(BaseModel):
    subject_pseudonym: str | None = Field(description="How the ledger names the subject")
    payloads: int = Field(description="Sealed payloads made unreadable")
    requests: int = Field(description="Requests of the subject")
    seq: int = Field(description="The `erasure` event in the ledger")


class InferAnswer(BaseModel):
    request_id: str
    answer: Any = Field(description="What the configured stack answered")


class InferParked(BaseModel):
    """A policy parked the decision for a person (GET /v1/reviews)."""

    review_id: int
    request_id: str
    answer: Any


class InferDenied(BaseModel):
    detail: str
    policy_id: str
    policy_version: str
    message: str
    request_id: str


class InferFailed(BaseModel):
    """The stack raised: the request is stored with outcome `error` and this reason."""

    detail: str = Field(description="The stack's exception, first line")
    request_id: str
