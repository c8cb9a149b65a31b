"""`POST /v1/infer`: the stack run by the service, with the policy gates around it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import GatewayDep, Ingester
from app.api.schemas import Error, InferAnswer, InferDenied, InferFailed, InferParked, errors
from app.errors import NotFound

router = APIRouter(tags=["gateway"])


@router.post(
    "/v1/infer",
    response_model=InferAnswer,
    summary="Run the configured stack on an input, gated and recorded",
    responses={
        202: {
            "model": InferParked,
            "description": "a policy parked the decision for review; the body names it",
        },
        403: {
            "model": InferDenied,
            "description": "a policy denied the request; the body names it (or the key lacks "
            "the ingest scope: then only `detail`)",
        },
        **errors(401),
        404: {"model": Error, "description": "no stack is configured (WARDEN_STACK)"},
        500: {
            "model": InferFailed,
            "description": "the stack raised; the request is stored as `error`, the body says why",
        },
        503: {
            "model": Error,
            "description": "the stack could not start; the body says why; nothing was stored",
        },
    },
)
async def infer(
    request: Request, principal: Ingester, gateway: GatewayDep
) -> InferAnswer | JSONResponse:
    if gateway is None:
        raise NotFound("no stack is configured: set WARDEN_STACK=module:callable")
    body = await request.json()
    result = await run_in_threadpool(gateway.infer, principal, body)
    if result.denied is not None:
        return JSONResponse(
            {
                "detail": str(result.denied),
                "policy_id": result.denied.policy_id,
                "policy_version": result.denied.version,
                "message": result.denied.message,
                "request_id": result.request_id,
            },
            status_code=403,
        )
    if result.failed is not None:
        return JSONResponse(
            {"detail": f"the stack failed: {result.failed}", "request_id": result.request_id},
            status_code=500,
        )
    if result.review_id is not None:
        return JSONResponse(
            {"review_id": result.review_id, "request_id": result.request_id,
             "answer": result.answer},
            status_code=202,
        )  # fmt: skip
    return InferAnswer(request_id=result.request_id, answer=result.answer)
