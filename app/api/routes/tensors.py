"""Sampled world-model tensors: `PUT` by the SDK (ingest scope), `GET` for readers.

The body limit of a `PUT` is `tensor_max_bytes` (WARDEN_TENSOR_MAX_BYTES): tensors are kept
in the database (app/store/tensors.py), where every replica reads them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from app.api.body import read_body
from app.api.deps import EngineDep, Ingester, Reader, SettingsDep
from app.api.schemas import binary, errors
from app.errors import PayloadTooLarge
from app.store.tensors import load_tensor, store_tensor, too_large

router = APIRouter(tags=["tensors"], responses=errors(401, 403))
# The PUT answers with its status alone: an empty body.
# The lowercase hex SHA-256 of the tensor's bytes.
Digest = Annotated[str, Path(pattern="^[0-9a-f]{64}$", description="SHA-256 of the .npy bytes")]
_EMPTY = {"schema": {"type": "string", "format": "binary", "maxLength": 0}}


@router.put(
    "/v1/tensors/{digest}",
    summary="Store a sampled tensor (.npy) under the SHA-256 of its bytes",
    status_code=201,
    response_class=Response,
    responses={
        201: {"description": "stored", "content": {"application/octet-stream": _EMPTY}},
        200: {"description": "stored already", "content": {"application/octet-stream": _EMPTY}},
        **errors(400, 413),
    },
)
async def put_tensor(
    digest: Digest, request: Request, principal: Ingester, settings: SettingsDep, engine: EngineDep
) -> Response:
    limit = settings.tensor_max_bytes
    try:
        body = await read_body(request, limit)
    except PayloadTooLarge:
        declared = request.headers.get("content-length", "")
        raise too_large(declared if declared.isdigit() else f"over {limit}", limit) from None
    created = await run_in_threadpool(
        store_tensor, engine, principal.project_id, digest, body, limit
    )
    return Response(status_code=201 if created else 200)


@router.get(
    "/v1/tensors/{digest}",
    summary="A sampled tensor (.npy)",
    response_class=Response,
    responses={
        200: binary("application/octet-stream", "The tensor as NumPy .npy bytes"),
        **errors(400, 404),
    },
)
async def get_tensor(
    digest: Digest, principal: Reader, settings: SettingsDep, engine: EngineDep
) -> Response:
    body = await run_in_threadpool(
        load_tensor, engine, settings.data_dir, principal.project_id, digest
    )
    return Response(body, media_type="application/octet-stream")
