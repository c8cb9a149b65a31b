"""Errors a caller of the service can cause, each mapped to one HTTP status.

WardenError                 (500: a bug or an outage, never the caller's fault)
├── BadRequest              400  the body or a parameter is malformed
├── Unauthenticated         401  no key, a malformed key, or an unknown or revoked key
├── Forbidden               403  the key lacks the scope the endpoint needs
├── NotFound                404  no such object in the key's project
├── Conflict                409  the object exists already
├── Unprocessable           422  well-formed, but a value is not allowed: the message names it
├── PayloadTooLarge         413  the body is over the configured limit
├── Unprocessable           422  well-formed, but breaks a rule of the project (a score config)
├── UnsupportedMediaType    415  a content type or encoding the endpoint does not take
└── Overloaded              503  more work than the process admits now: retry after `Retry-After`
"""

from __future__ import annotations


class WardenError(Exception):
    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def headers(self) -> dict[str, str] | None:
        """Headers the answer carries besides the message (none unless a subclass says)."""
        return None


class BadRequest(WardenError):
    status_code = 400


class Unauthenticated(WardenError):
    status_code = 401


class Forbidden(WardenError):
    status_code = 403


class NotFound(WardenError):
    status_code = 404


class Conflict(WardenError):
    status_code = 409


class Unprocessable(WardenError):
    status_code = 422


class PayloadTooLarge(WardenError):
    status_code = 413


class UnsupportedMediaType(WardenError):
    status_code = 415


class Overloaded(WardenError):
    status_code = 503

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)}
