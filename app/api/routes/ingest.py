"""`POST /v1/traces`: OTLP/HTTP trace export (protobuf or JSON, optionally gzipped)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from app.api.body import read_body
from app.api.deps import AdmittedBatch, EngineDep, Ingester, MetricsDep, SettingsDep, VaultDep
from app.api.schemas import ExportTraceServiceResponse
from app.ingest import otlp
from app.ingest.pipeline import ingest_traces, partial_success_message

router = APIRouter(tags=["ingest"])


@router.post(
    "/v1/traces",
    summary="Export spans (OTLP/HTTP)",
    response_class=Response,
    responses={
        200: {
            "description": "ExportTraceServiceResponse, in the request's encoding; all spans "
            "durable once answered",
            # `model` documents the JSON encoding (application/json).
            "model": ExportTraceServiceResponse,
            "content": {otlp.PROTOBUF: {"schema": {"type": "string", "format": "binary"}}},
        },
        400: {"description": "malformed protobuf or JSON"},
        401: {"description": "no API key, or an unknown or revoked one"},
        403: {"description": "the API key lacks the ingest scope"},
        413: {"description": "body over the payload limit"},
        415: {"description": "unsupported content type or encoding"},
        503: {
            "description": "over capacity (or the database is unavailable): nothing was "
            "stored; retry after `Retry-After` seconds, as OTLP exporters do",
            "headers": {
                "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
            },
        },
        # OTLP/HTTP answers errors with a google.rpc.Status in the request's encoding (never
        # FastAPI's 422 validation body, which this range keeps out of the document).
        "4XX": {"description": "any client error: a google.rpc.Status, protobuf or JSON"},
    },
)
async def export_traces(
    request: Request,
    # First: past the bound a batch is refused before its key is checked or its body read.
    admitted: AdmittedBatch,
    principal: Ingester,
    engine: EngineDep,
    vault: VaultDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> Response:
    kind = otlp.media_type(request.headers.get("content-type"))
    body = await read_body(request, settings.payload_limit_bytes)
    result = await run_in_threadpool(
        ingest_traces,
        engine,
        vault,
        metrics,
        principal.project_id,
        body,
        kind,
        request.headers.get("content-encoding"),
        settings.payload_limit_bytes,
    )
    content = otlp.encode_response(kind, result.rejected, partial_success_message(result))
    return Response(content=content, media_type=kind)
