"""The policy bundle the SDKs enforce inline, served with an ETag so refreshes are cheap."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from app.api.deps import PoliciesDep, PrincipalDep
from app.api.schemas import PolicyBundle, errors

router = APIRouter(tags=["policies"])


@router.get(
    "/v1/policies/bundle",
    response_model=PolicyBundle,
    summary="The policy set (id, version, hash, CEL) for inline enforcement",
    responses={
        304: {"description": "unchanged since the ETag given in If-None-Match"},
        **errors(401),
    },
)
async def bundle(request: Request, principal: PrincipalDep, policies: PoliciesDep) -> Response:
    etag = f'"{policies.hash}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return JSONResponse(policies.to_bundle(), headers={"ETag": etag})
