"""Deploy gates over HTTP: promote a version to an alias, roll an alias back (admin scope)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.api.deps import Admin, EngineDep, Reader, SettingsDep
from app.governance import deploy
from app.registry import lineage, model_versions

router = APIRouter(tags=["models"])


class PromoteBody(BaseModel):
    version: str = Field(description="The registered version to promote")
    alias: str = Field(default="champion", description="The alias to move")


class RollbackBody(BaseModel):
    alias: str = Field(default="champion", description="The alias to move back")
    reason: str = ""


def _body(move: deploy.AliasMove) -> dict[str, Any]:
    return {
        "model": move.model,
        "alias": move.alias,
        "action": move.action,
        "from_version": move.from_version,
        "to_version": move.to_version,
        "allowed": move.allowed,
        "verdicts": [deploy.verdict_json(v) for v in move.verdicts],
    }


@router.post(
    "/v1/models/{name}/promote",
    summary="Run the deploy gates and move the alias if they allow it",
    responses={403: {"description": "a deploy policy refused: the alias did not move"}},
)
async def promote(
    name: str, body: PromoteBody, request: Request, principal: Admin,
    engine: EngineDep, settings: SettingsDep,
) -> Any:  # fmt: skip
    client = lineage.mlflow_client(settings.resolved_mlflow_tracking_uri)
    move = await run_in_threadpool(
        deploy.promote, engine, client, request.app.state.policies, principal.project_id,
        principal.project, name, body.version, body.alias, f"key:{principal.key_id}",
    )  # fmt: skip
    if not move.allowed:
        reasons = "; ".join(f"{v.policy_id}: {v.message}" for v in move.failing())
        return JSONResponse({"detail": f"refused by policy: {reasons}", **_body(move)}, 403)
    return _body(move)


@router.post("/v1/models/{name}/rollback", summary="Move the alias back to the previous version")
async def rollback(
    name: str, body: RollbackBody, principal: Admin, engine: EngineDep, settings: SettingsDep
) -> Any:
    client = lineage.mlflow_client(settings.resolved_mlflow_tracking_uri)
    move = await run_in_threadpool(
        deploy.rollback, engine, client, principal.project_id, name, body.alias,
        f"key:{principal.key_id}", body.reason,
    )  # fmt: skip
    return _body(move)


@router.get("/v1/models", summary="Model versions seen in traffic, with what they served")
async def list_models(principal: Reader, engine: EngineDep) -> Any:
    items = await run_in_threadpool(model_versions.list_versions, engine, principal.project_id)
    return {"items": items}


@router.get(
    "/v1/models/{name}/versions/{version}",
    summary="One version: traffic, outcomes, policy outcomes, aliases, lineage",
)
async def get_model_version(name: str, version: str, principal: Reader, engine: EngineDep) -> Any:
    return await run_in_threadpool(
        model_versions.get_version, engine, principal.project_id, name, version
    )
