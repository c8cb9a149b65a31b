"""The audit ledger over HTTP: events, signed heads, proofs (audit scope), signing and
erasure (admin), and the public key that checks the heads (no key needed)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.api.deps import Admin, EngineDep, PrincipalDep
from app.audit import checkpoints, erasure, heads, ledger
from app.errors import NotFound
from app.keys import Scope
from app.projects import Principal
from collectors import conventions as wire

router = APIRouter(tags=["audit"])


def _auditor(principal: PrincipalDep) -> Principal:
    principal.require(Scope.AUDIT)
    return principal


Auditor = Annotated[Principal, Depends(_auditor)]


@router.get("/v1/audit/public-key", summary="The Ed25519 public key that signs tree heads")
async def public_key(request: Request) -> Any:
    key = request.app.state.audit_key
    return {
        "algorithm": "Ed25519",
        "key_id": heads.key_id(key.public_key()),
        "public_key_pem": heads.public_key_pem(key),
    }


@router.get("/v1/audit/heads", summary="Signed tree heads, largest first (HEAD.json each)")
async def list_heads(
    principal: Auditor,
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    below: Annotated[
        int | None, Query(ge=0, description="only heads of a smaller tree size (paging)")
    ] = None,
) -> Any:
    found = await run_in_threadpool(
        checkpoints.list_heads, engine, principal.project_id, limit, below
    )
    return {"items": [heads.head_to_json(h) for h in found]}


@router.get("/v1/audit/heads/latest", summary="The newest signed tree head (HEAD.json)")
async def latest_head(principal: Auditor, engine: EngineDep) -> Any:
    found = await run_in_threadpool(checkpoints.latest_head, engine, principal.project_id)
    if found is None:
        raise NotFound("no signed head yet: POST /v1/audit/heads signs one now")
    return heads.head_to_json(found)


@router.post("/v1/audit/heads", summary="Sign the ledger's head now (if it grew)")
async def sign_head(principal: Admin, engine: EngineDep, request: Request) -> Any:
    head = await run_in_threadpool(
        checkpoints.sign_now, engine, request.app.state.audit_key, principal.project_id
    )
    return heads.head_to_json(head)


@router.get("/v1/audit/events", summary="Ledger events in seq order, with their hashes")
async def list_events(
    principal: Auditor,
    engine: EngineDep,
    from_seq: Annotated[int, Query(ge=1)] = 1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    return await run_in_threadpool(
        ledger.list_events, engine, principal.project_id, from_seq, limit
    )


@router.get(
    "/v1/audit/proof/{seq}", summary="Inclusion proof of an event against a signed head"
)
async def inclusion_proof(
    seq: int,
    principal: Auditor,
    engine: EngineDep,
    tree_size: Annotated[
        int | None, Query(ge=1, description="a signed head's size [default: the newest]")
    ] = None,
) -> Any:
    proof = await run_in_threadpool(
        checkpoints.inclusion, engine, principal.project_id, seq, tree_size
    )
    return proof.to_json()


@router.get(
    "/v1/audit/consistency",
    summary="Consistency proof from a tree size (a head you kept) to a signed head",
)
async def consistency_proof(
    principal: Auditor,
    engine: EngineDep,
    first: Annotated[int, Query(ge=0, description="the size of the head you kept")],
    second: Annotated[
        int | None, Query(ge=0, description="a signed head's size [default: the newest]")
    ] = None,
) -> Any:
    return await run_in_threadpool(
        checkpoints.consistency, engine, principal.project_id, first, second
    )


class ErasureBody(BaseModel):
    subject: str = Field(min_length=1, max_length=256, description=wire.REQUEST_SUBJECT)
    reason: str = Field(default="", description="why, for the record")


@router.post(
    "/v1/audit/erasures",
    summary="Erase a subject: destroy their data key and id; the ledger records it",
)
async def erase(body: ErasureBody, principal: Admin, engine: EngineDep) -> Any:
    done = await run_in_threadpool(
        erasure.erase_subject, engine, principal.project_id, body.subject,
        f"key:{principal.key_id}", body.reason,
    )  # fmt: skip
    return {
        "subject_pseudonym": done.pseudonym,
        "payloads": done.payloads,
        "requests": done.requests,
        "seq": done.seq,
    }
