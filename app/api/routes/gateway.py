"""`POST /v1/infer`: the stack run by the service, with the policy gates around it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import Ingester
from app.errors import NotFound

router = APIRouter(tags=["gateway"])


@router.post(
    "/v1/infer",
    summary="Run the configured stack on an input, gated and recorded",
    responses={
        202: {"description": "a policy parked the decision for review; the body names it"},
        403: {"description": "a policy denied the request; the body names it"},
    },
)
async def infer(request: Request, principal: Ingester) -> Any:
    gateway = request.app.state.gateway
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
    if result.review_id is not None:
        return JSONResponse(
            {"review_id": result.review_id, "request_id": result.request_id,
             "answer": result.answer},
            status_code=202,
        )  # fmt: skip
    return {"request_id": result.request_id, "answer": result.answer}
