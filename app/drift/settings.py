"""A project's drift settings: windows, schedule and alerting, kept in `projects.settings`.

Set with `warden drift configure`; every field has a default, so a project that never
configured anything is monitored with the defaults below.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, HttpUrl, model_validator
from sqlalchemy import Engine

from app.store.engine import read_connection, write_transaction
from app.store.project_settings import merge_section, read_section

KEY = "drift"


class DriftSettings(BaseModel):
    """How one project's drift jobs choose their windows, when they run, whom they alert."""

    window: Literal["count", "time"] = Field(
        default="count",
        description="current window: the newest `current_count` requests, or the last "
        "`current_seconds`",
    )
    current_count: int = Field(default=500, ge=20, le=1_000_000)
    current_seconds: int = Field(default=3600, ge=60)
    reference: Literal["spread", "first", "preceding"] = Field(
        default="spread",
        description="traffic reference (latent states and decisions always, inputs when the "
        "version's run logged no training dataset): `spread`, `reference_count` requests "
        "evenly spaced across the version's first 10 x `reference_count` (fewer while it "
        "has fewer before the current window); `first`, its first `reference_count` "
        "requests; `preceding`, the `reference_count` requests just before the current "
        "window; a pinned time range (`reference_since`, `reference_until`) overrides all",
    )
    reference_count: int = Field(
        default=500,
        ge=20,
        le=1_000_000,
        description="requests in the traffic reference (unless a time range is pinned)",
    )
    reference_since: datetime | None = Field(
        default=None, description="pin the traffic reference to a time range instead"
    )
    reference_until: datetime | None = None
    min_requests: int = Field(
        default=50, ge=20, description="a window with fewer requests is not judged"
    )
    permutations: int = Field(default=100, ge=20, le=10_000)
    interval_seconds: int = Field(
        default=3600, ge=0, description="seconds between scheduled jobs; 0: on demand only"
    )
    webhook_url: HttpUrl | None = Field(
        default=None, description="JSON POST of every report whose policies warn or roll back"
    )
    webhook_attempts: int = Field(default=4, ge=1, le=20)

    @model_validator(mode="after")
    def _pinned_range(self) -> DriftSettings:
        if (self.reference_since is None) != (self.reference_until is None):
            raise ValueError("reference_since and reference_until go together")
        if (
            self.reference_since
            and self.reference_until
            and (self.reference_since >= self.reference_until)
        ):
            raise ValueError("reference_since must be before reference_until")
        return self


def load(engine: Engine, project_id: int) -> DriftSettings:
    with read_connection(engine) as conn:
        return read_section(conn, project_id, KEY, DriftSettings)


def update_settings(engine: Engine, project_id: int, changes: dict[str, Any]) -> DriftSettings:
    """Apply `changes` on top of the stored settings; invalid changes store nothing."""
    with write_transaction(engine) as conn:
        return merge_section(conn, project_id, KEY, DriftSettings, changes)
