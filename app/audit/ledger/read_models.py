"""Typed read models of the live ledger: its events, where it stands, signed tree heads and
the inclusion and consistency proofs against them (docs/audit.md gives the byte formats)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.audit import heads


class LedgerEvent(BaseModel):
    """An event as stored: the canonical event and its chain hashes (hex)."""

    seq: int
    project: str
    kind: str
    created_at: str = Field(description="RFC 3339, as hashed")
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class EventPage(BaseModel):
    items: list[LedgerEvent]
    tree_size: int = Field(description="The ledger's size now")
    next_from_seq: int | None = Field(description="Pass as `from_seq` for the next page")


class LedgerState(BaseModel):
    """Where a project's ledger stands now (unsigned)."""

    tree_size: int
    root_hash: str = Field(description="The Merkle root (hex) of its events")


class SignedHead(BaseModel):
    """A signed tree head as an auditor keeps it (HEAD.json)."""

    format: str
    project: str
    tree_size: int
    root_hash: str = Field(description="hex")
    signed_at: str = Field(description="RFC 3339")
    key_id: str
    signature: str = Field(description="Ed25519, base64 (standard, padded)")

    @classmethod
    def of(cls, head: heads.TreeHead) -> SignedHead:
        return cls.model_validate(heads.head_to_json(head))


class InclusionProofOut(BaseModel):
    """The audit path of an event against a signed head (RFC 6962)."""

    seq: int
    leaf_index: int = Field(description="seq - 1")
    event_hash: str
    leaf_hash: str
    tree_size: int
    proof: list[str] = Field(description="The audit path, hex hashes from the leaf up")
    head: SignedHead


class ConsistencyProof(BaseModel):
    """The proof that the tree of size `first` is a prefix of the signed head `second`."""

    first: int
    second: int
    first_root: str
    proof: list[str]
    first_head: SignedHead | None = Field(description="The signed head of size `first`, if any")
    second_head: SignedHead
