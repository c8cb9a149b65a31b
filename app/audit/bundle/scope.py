"""What an export takes: a project, a period of request start times, one model, one subject.

A scope with no model, no subject and a period open at the ledger's start is full (every
event of the log goes into the bundle); any other is partial (docs/audit.md, section 8).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.audit import chain
from app.errors import BadRequest


@dataclass(frozen=True)
class Scope:
    """What to export. `since` is inclusive, `until` exclusive; both aware datetimes."""

    project: str
    since: datetime | None = None
    until: datetime | None = None
    model_name: str | None = None
    model_version: str | None = None
    subject: str | None = None

    def __post_init__(self) -> None:
        if self.model_version and not self.model_name:
            raise BadRequest("a model version needs the model's name too")
        for moment in (self.since, self.until):
            if moment is not None and moment.tzinfo is None:
                raise BadRequest("give times with a time zone, e.g. 2025-01-02T00:00:00Z")
        if self.since and self.until and self.since >= self.until:
            raise BadRequest("the period is empty: --from must be before --to")

    @property
    def filtered(self) -> bool:
        return bool(self.model_name or self.subject)

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "from": chain.format_time(self.since) if self.since else None,
            "to": chain.format_time(self.until) if self.until else None,
            "model": (
                {"name": self.model_name, "version": self.model_version}
                if self.model_name
                else None
            ),
            "subject": self.subject,
        }


def parse_model(text: str | None) -> tuple[str | None, str | None]:
    """`name` or `name/version` (a version is the digits after the last slash).

    >>> parse_model("booking-world-model/4"), parse_model("org/model")
    (('booking-world-model', '4'), ('org/model', None))
    """
    if not text:
        return None, None
    name, _, version = text.rpartition("/")
    if name and version.isdigit():
        return name, version
    return text, None
