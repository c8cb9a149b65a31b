"""The audit ledger over HTTP: events, signed heads, proofs (audit scope), signing and
erasure (admin), and the public key that checks the heads (no key needed)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.api.deps import Admin, AuditKeyDep, EngineDep, PrincipalDep
from app.api.schemas import SQL_INT_MAX, ErasureOut, HeadList, PublicKey, errors
from app.audit import erasure, heads, ledger
from app.audit.ledger import checkpoints
from app.audit.ledger.read_models import ConsistencyProof, EventPage, InclusionProofOut, SignedHead
from app.errors import NotFound
from app.tenancy.keys import Scope
from app.tenancy.projects import Principal
from collectors import conventions as wire

router = APIRouter(tags=["audit"])


def _auditor(principal: PrincipalDep) -> Principal:
    principal.require(Scope.AUDIT)
    return principal


Auditor = Annotated[Principal, Depends(_auditor)]
# What a route that needs a key may answer besides its own errors.
_KEYED = errors(401, 403)


@router.get("/v1/audit/public-key", summary="The Ed25519 public key that signs tree heads")
async def public_key(key: AuditKeyDep) -> PublicKey:
    return PublicKey(
        algorithm="Ed25519",
        key_id=heads.key_id(key.public_key()),
        public_key_pem=heads.public_key_pem(key),
    )


@router.get(
    "/v1/audit/heads",
    summary="Signed tree heads, largest first (HEAD.json each)",
    responses=_KEYED,
)
async def list_heads(
    principal: Auditor,
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    below: Annotated[
        int | None,
        Query(ge=0, le=SQL_INT_MAX, description="only heads of a smaller tree size (paging)"),
    ] = None,
) -> HeadList:
    found = await run_in_threadpool(
        checkpoints.list_heads, engine, principal.project_id, limit, below
    )
    return HeadList(items=[SignedHead.of(h) for h in found])


@router.get(
    "/v1/audit/heads/latest",
    summary="The newest signed tree head (HEAD.json)",
    responses={**_KEYED, **errors(404)},
)
async def latest_head(principal: Auditor, engine: EngineDep) -> SignedHead:
    found = await run_in_threadpool(checkpoints.latest_head, engine, principal.project_id)
    if found is None:
        raise NotFound("no signed head yet: POST /v1/audit/heads signs one now")
    return SignedHead.of(found)


@router.post("/v1/audit/heads", summary="Sign the ledger's head now (if it grew)", responses=_KEYED)
async def sign_head(principal: Admin, engine: EngineDep, key: AuditKeyDep) -> SignedHead:
    head = await run_in_threadpool(checkpoints.sign_now, engine, key, principal.project_id)
    return SignedHead.of(head)


@router.get(
    "/v1/audit/events",
    summary="Ledger events in seq order, with their hashes",
    responses={**_KEYED, **errors(400)},
)
async def list_events(
    principal: Auditor,
    engine: EngineDep,
    # Room for `limit` above it: the read asks for the events below from_seq + limit.
    from_seq: Annotated[int, Query(ge=1, le=SQL_INT_MAX - 1000)] = 1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    return await run_in_threadpool(
        ledger.list_events, engine, principal.project_id, from_seq, limit
    )


@router.get(
    "/v1/audit/proof/{seq}",
    summary="Inclusion proof of an event against a signed head",
    responses={**_KEYED, **errors(400, 404, 409)},
)
async def inclusion_proof(
    seq: Annotated[int, Path(ge=0, le=SQL_INT_MAX)],
    principal: Auditor,
    engine: EngineDep,
    tree_size: Annotated[
        int | None,
        Query(ge=1, le=SQL_INT_MAX, description="a signed head's size [default: the newest]"),
    ] = None,
) -> InclusionProofOut:
    proof = await run_in_threadpool(
        checkpoints.inclusion, engine, principal.project_id, seq, tree_size
    )
    return proof.out()


@router.get(
    "/v1/audit/consistency",
    summary="Consistency proof from a tree size (a head you kept) to a signed head",
    responses={**_KEYED, **errors(400, 404, 409)},
)
async def consistency_proof(
    principal: Auditor,
    engine: EngineDep,
    first: Annotated[
        int, Query(ge=0, le=SQL_INT_MAX, description="the size of the head you kept")
    ],
    second: Annotated[
        int | None,
        Query(ge=0, le=SQL_INT_MAX, description="a signed head's size [default: the newest]"),
    ] = None,
) -> ConsistencyProof:
    return await run_in_threadpool(
        checkpoints.consistency, engine, principal.project_id, first, second
    )


class ErasureBody(BaseModel):
    subject: str = Field(min_length=1, max_length=256, description=wire.REQUEST_SUBJECT)
    reason: str = Field(default="", description="why, for the record")


@router.post(
    "/v1/audit/erasures",
    summary="Erase a subject: destroy their data key and id; the ledger records it",
    responses={**_KEYED, **errors(404, 409)},
)
async def erase(body: ErasureBody, principal: Admin, engine: EngineDep) -> ErasureOut:
    done = await run_in_threadpool(
        erasure.erase_subject, engine, principal.project_id, body.subject,
        f"key:{principal.key_id}", body.reason,
    )  # fmt: skip
    return ErasureOut(
        subject_pseudonym=done.pseudonym,
        payloads=done.payloads,
        requests=done.requests,
        seq=done.seq,
    )
