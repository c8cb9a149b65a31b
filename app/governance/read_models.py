"""Typed read models of governance: reviews of parked decisions (`reviews`) and alias moves
through the deploy gates with the verdicts that allowed or refused them (`deploy`, and as
stored: `deployments`)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from app.governance.deploy import AliasMove
    from policies import Verdict


class ReviewOut(BaseModel):
    """A decision a `require_review` policy parked for a person, and what they decided."""

    id: int
    request_id: str
    policy_id: str | None
    status: str = Field(description="pending, approved or rejected")
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    note: str | None


class VerdictOut(BaseModel):
    """What one policy said, with the exact policy (id, version, content hash)."""

    policy_id: str
    version: str
    hash: str
    effect: str
    fired: bool
    message: str

    @classmethod
    def of(cls, verdict: Verdict) -> VerdictOut:
        return cls(
            policy_id=verdict.policy_id,
            version=verdict.version,
            hash=verdict.hash,
            effect=verdict.effect.value,
            fired=verdict.fired,
            message=verdict.message,
        )


class AliasMoveOut(BaseModel):
    """An alias move asked for (promotion, rollback) and the deploy gates' say."""

    model: str
    alias: str
    action: str = Field(description="promote or rollback")
    from_version: str | None
    to_version: str | None
    allowed: bool
    verdicts: list[VerdictOut]

    @classmethod
    def of(cls, move: AliasMove) -> AliasMoveOut:
        return cls(
            model=move.model,
            alias=move.alias,
            action=move.action,
            from_version=move.from_version,
            to_version=move.to_version,
            allowed=move.allowed,
            verdicts=[VerdictOut.of(v) for v in move.verdicts],
        )


class RefusedMove(AliasMoveOut):
    """A promotion the deploy policies refused: the alias did not move."""

    detail: str = Field(description="The refusing policies and their messages")


class StoredMove(BaseModel):
    """An alias move as `deployments` keeps it: asked for, allowed or refused, and why."""

    model_name: str
    alias: str
    action: str = Field(description="promote or rollback")
    from_version: str | None
    to_version: str | None
    allowed: bool
    verdicts: list[dict[str, Any]] = Field(
        description="Each deploy policy's verdict as stored (policy_id, version, hash, effect, "
        "fired, message)"
    )
    actor: str
    reason: str | None
    created_at: datetime
