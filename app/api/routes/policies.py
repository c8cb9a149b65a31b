"""The policy bundle the SDKs enforce inline, with the key's project's running experiments,
served with an ETag (over both) so refreshes are cheap."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import EngineDep, PoliciesDep, PrincipalDep
from app.api.schemas import PolicyBundle, errors
from app.experiments import configs

router = APIRouter(tags=["policies"])


@router.get(
    "/v1/policies/bundle",
    response_model=PolicyBundle,
    summary="The policy set (id, version, hash, CEL) and the running experiments, for the SDKs",
    responses={
        304: {"description": "unchanged since the ETag given in If-None-Match"},
        **errors(401),
    },
)
async def bundle(
    request: Request, principal: PrincipalDep, policies: PoliciesDep, engine: EngineDep
) -> Response:
    experiments, digest = await run_in_threadpool(
        configs.bundle, engine, principal.project_id
    )
    # Without experiments the ETag is the policy set's hash, as it always was.
    etag = f'"{policies.hash}-{digest[:16]}"' if experiments else f'"{policies.hash}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return JSONResponse(
        {**policies.to_bundle(), "experiments": experiments}, headers={"ETag": etag}
    )
