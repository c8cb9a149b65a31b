"""Model versions over HTTP: what each served (read scope); deploy gates that promote a
version to an alias and roll an alias back (admin scope)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.api.deps import Admin, EngineDep, PoliciesDep, Reader, SettingsDep
from app.api.schemas import ModelVersionList, errors
from app.governance import deploy
from app.governance.read_models import AliasMoveOut, RefusedMove
from app.registry import lineage, model_versions, registered
from app.registry.read_models import ModelVersionDetail

router = APIRouter(tags=["models"], responses=errors(401, 403))


class PromoteBody(BaseModel):
    version: str = Field(description="The registered version to promote")
    alias: str = Field(default="champion", description="The alias to move")


class RollbackBody(BaseModel):
    alias: str = Field(default="champion", description="The alias to move back")
    reason: str = ""


@router.post(
    "/v1/models/{name}/promote",
    response_model=AliasMoveOut,
    summary="Run the deploy gates and move the alias if they allow it",
    responses={
        403: {
            "model": RefusedMove,
            "description": "a deploy policy refused: the alias did not move (or the key lacks "
            "the admin scope: then only `detail`)",
        },
        **errors(404, 409),
    },
)
async def promote(
    name: str, body: PromoteBody, principal: Admin, engine: EngineDep, settings: SettingsDep,
    policies: PoliciesDep,
) -> AliasMoveOut | JSONResponse:  # fmt: skip
    client = lineage.mlflow_client(settings.resolved_mlflow_tracking_uri)
    move = await run_in_threadpool(
        deploy.promote, engine, client, policies, principal.project_id,
        principal.project, name, body.version, body.alias, f"key:{principal.key_id}",
    )  # fmt: skip
    out = AliasMoveOut.of(move)
    if not move.allowed:
        reasons = "; ".join(f"{v.policy_id}: {v.message}" for v in move.failing())
        return JSONResponse(
            {"detail": f"refused by policy: {reasons}", **out.model_dump(mode="json")}, 403
        )
    return out


@router.post(
    "/v1/models/{name}/rollback",
    summary="Move the alias back to the previous version",
    responses=errors(409),
)
async def rollback(
    name: str, body: RollbackBody, principal: Admin, engine: EngineDep, settings: SettingsDep
) -> AliasMoveOut:
    client = lineage.mlflow_client(settings.resolved_mlflow_tracking_uri)
    move = await run_in_threadpool(
        deploy.rollback, engine, client, principal.project_id, name, body.alias,
        f"key:{principal.key_id}", body.reason,
    )  # fmt: skip
    return AliasMoveOut.of(move)


@router.get(
    "/v1/models",
    summary="Model versions seen in traffic, with what they served, and the versions of their "
    "models registered in MLflow without traffic yet; aliases as MLflow's registry holds them",
)
async def list_models(
    principal: Reader, engine: EngineDep, settings: SettingsDep
) -> ModelVersionList:
    items = await run_in_threadpool(model_versions.list_versions, engine, principal.project_id)
    registry = await run_in_threadpool(
        registered.registered_models, settings.resolved_mlflow_tracking_uri,
        sorted({i.name for i in items}),
    )  # fmt: skip
    if registry is not None:  # else MLflow is away: the model index's copy alone
        items = registered.with_registered(items, registry, registered.unseen_summary)
    return ModelVersionList(items=items)


@router.get(
    "/v1/models/{name}/versions/{version}",
    summary="One version: traffic, outcomes, policy outcomes, aliases, lineage",
    responses=errors(404),
)
async def get_model_version(
    name: str, version: str, principal: Reader, engine: EngineDep
) -> ModelVersionDetail:
    return await run_in_threadpool(
        model_versions.get_version, engine, principal.project_id, name, version
    )
