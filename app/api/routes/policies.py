"""The policy bundle the SDKs enforce inline, served with an ETag so refreshes are cheap."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from app.api.deps import PrincipalDep

router = APIRouter(tags=["policies"])


@router.get(
    "/v1/policies/bundle",
    summary="The policy set (id, version, hash, CEL) for inline enforcement",
    responses={304: {"description": "unchanged since the ETag given in If-None-Match"}},
)
async def bundle(request: Request, principal: PrincipalDep) -> Any:
    policies = request.app.state.policies
    etag = f'"{policies.hash}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return JSONResponse(policies.to_bundle(), headers={"ETag": etag})
