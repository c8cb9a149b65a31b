"""Scores: score configs of the project (put, list, delete: admin to change, read to list)
and feedback on a request (record: ingest, the scope that sends scores over OTLP too; list:
read). The rules are in `app.scores`; docs/scores.md says what each field means."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.api.deps import Admin, EngineDep, Ingester, Reader
from app.api.schemas import errors
from app.scores import configs, queries, recording
from app.scores.read_models import ScoreConfigList, ScoreConfigOut, ScoreList, ScoreOut
from app.scores.validation import ScoreFields

router = APIRouter(tags=["scores"], responses=errors(401, 403))

# The whitespace Python's `str.strip` removes (what the configs' own check refuses around a
# name), spelled out: `\s` and `.` differ between the document's regex dialect (ECMA 262,
# which clients validate with) and the service's (Rust's, through pydantic), e.g. on U+0085
# and U+2028, so a pattern written with them accepts on one side what the other refuses.
_SPACE = (
    r"\t\n\u000b\f\r \u001c-\u001f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f"
    r"\u3000"
)
ConfigName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=rf"^[^{_SPACE}]([^\n\r\u2028\u2029]*[^{_SPACE}])?$",
        description="The score's name, e.g. `rating`",
    ),
]


class ScoreConfigBody(BaseModel):
    data_type: Literal["numeric", "boolean", "categorical"] = Field(
        description="numeric, boolean or categorical"
    )
    min_value: float | None = Field(None, description="numeric: the smallest value allowed")
    max_value: float | None = Field(None, description="numeric: the largest value allowed")
    categories: list[Any] | None = Field(None, description="categorical: the values allowed")
    description: str | None = None


class ScoreBody(BaseModel):
    name: str = Field(description="What is scored, e.g. `rating`, `plan_success`, `correction`")
    value: bool | int | float | str = Field(
        description="A number, true/false, or a category (text); checked against the config "
        "of `name` if the project has one"
    )
    source: str = Field("human", description="human, user or automatic")
    author: str | None = Field(None, description="Who gave it")
    comment: str | None = None
    correction: dict[str, Any] | None = Field(
        None, description="For a human correction: the action the person chose instead"
    )


@router.put(
    "/v1/score-configs/{name}",
    summary="Create or replace a score config",
    description="A config that makes no sense (e.g. `min_value` above `max_value`) is "
    "answered 422 (under `4XX`: FastAPI's own 422 never leaves the service), whose detail "
    "starts with the field at fault.",
)
async def put_config(
    name: ConfigName, body: ScoreConfigBody, principal: Admin, engine: EngineDep
) -> ScoreConfigOut:
    return await run_in_threadpool(
        configs.put_config, engine, principal.project_id, name, body.data_type,
        body.min_value, body.max_value, body.categories, body.description,
        f"key:{principal.key_id}",
    )  # fmt: skip


@router.get("/v1/score-configs", summary="The project's score configs")
async def list_configs(principal: Reader, engine: EngineDep) -> ScoreConfigList:
    items = await run_in_threadpool(configs.list_configs, engine, principal.project_id)
    return ScoreConfigList(items=items)


@router.delete(
    "/v1/score-configs/{name}",
    summary="Delete a score config (answers what it said)",
    responses=errors(404),
)
async def delete_config(name: ConfigName, principal: Admin, engine: EngineDep) -> ScoreConfigOut:
    return await run_in_threadpool(
        configs.delete_config, engine, principal.project_id, name, f"key:{principal.key_id}"
    )


@router.post(
    "/v1/requests/{request_id}/scores",
    summary="Record feedback on a request",
    description="201 with the stored score. A score that fails the project's config of its "
    "name is answered 422 (under `4XX`), whose detail starts with the field at fault, e.g. "
    "`value: 7 is above the maximum 5 of score config 'rating'`; nothing is stored.",
    status_code=201,
    responses=errors(404),
)
async def record_score(
    request_id: str, body: ScoreBody, principal: Ingester, engine: EngineDep
) -> ScoreOut:
    fields = ScoreFields(
        body.name, body.value, body.source, body.author, body.comment, body.correction
    )
    return await run_in_threadpool(
        recording.record_score, engine, principal.project_id, request_id, fields
    )


@router.get(
    "/v1/requests/{request_id}/scores",
    summary="The scores of a request, oldest first",
    responses=errors(404),
)
async def list_scores(request_id: str, principal: Reader, engine: EngineDep) -> ScoreList:
    items = await run_in_threadpool(queries.list_scores, engine, principal.project_id, request_id)
    return ScoreList(items=items)
