"""Requests: the filtered, paginated list, and one request in detail."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from app.dashboard import catalog, ledger_entry, trajectory, waterfall
from app.dashboard.routes.deps import ViewerDep, page_router
from app.dashboard.templating import render
from app.errors import BadRequest
from app.registry import lineage
from app.store import queries
from policies import Phase

router = page_router()
PAGE = 50
POLICY_OUTCOMES = ("deny", "require_review", "warn", "allow")


def _time(text: str | None, name: str) -> datetime | None:
    """A `datetime-local` value (or any ISO 8601 time), taken as UTC without a zone."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name}: {text!r} is not a time like 2026-01-02T15:04") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _model(text: str | None) -> tuple[str | None, str | None]:
    if not text:
        return None, None
    name, _, version = text.rpartition("@")
    return (name, version) if name else (version, None)


@router.get("/requests")
def list_page(
    request: Request,
    viewer: ViewerDep,
    since: str | None = None,
    until: str | None = None,
    model: str | None = None,
    outcome: str | None = None,
    policy: str | None = None,
    policy_outcome: str | None = None,
    drift: str | None = None,
    fingerprint: str | None = None,
    cursor: str | None = None,
) -> Response:
    engine = request.app.state.engine
    pid = viewer.principal.project_id
    name, version = _model(model)
    flt = queries.RequestFilter(
        since=_time(since, "since"), until=_time(until, "until"), model_name=name,
        model_version=version, outcome=outcome or None,
        fingerprint=(fingerprint or "").strip().lower() or None,
        policy_id=policy or None, policy_outcome=policy_outcome or None,
    )  # fmt: skip
    window = None
    if drift:
        if not drift.isdigit():
            raise BadRequest("drift: pick a drift window from the list")
        window = catalog.drift_window(engine, pid, int(drift))
        flt = replace(
            flt,
            model_name=window["model_name"], model_version=window["model_version"],
            since=datetime.fromtimestamp(window["window_start_unix_nano"] / 1e9, UTC),
            until=datetime.fromtimestamp(window["window_end_unix_nano"] / 1e9, UTC),
        )  # fmt: skip
    page = queries.list_requests(engine, pid, flt, PAGE, cursor or None)
    filters = {
        "since": since or "", "until": until or "", "model": model or "", "outcome": outcome or "",
        "policy": policy or "", "policy_outcome": policy_outcome or "", "drift": drift or "",
        "fingerprint": fingerprint or "",
    }  # fmt: skip
    policies = sorted(
        (p.id for p in request.app.state.policies.policies
         if p.phase in (Phase.PRE_REQUEST, Phase.POST_DECISION)),
    )  # fmt: skip
    return render(
        request, "requests.html", viewer, title="Requests", page=page, filters=filters,
        active={k: v for k, v in filters.items() if v}, cursor=cursor,
        versions=catalog.versions(engine, pid), outcomes=catalog.known_outcomes(engine, pid),
        policies=policies, policy_outcomes=POLICY_OUTCOMES,
        windows=catalog.drift_windows(engine, pid), window=window,
    )  # fmt: skip


COLLAPSE_ABOVE = 1000  # spans: a bigger trace opens collapsed to its top levels


@router.get("/requests/{request_id}")
def detail_page(
    request: Request,
    request_id: str,
    viewer: ViewerDep,
    spans: int = 0,
    focus: str | None = None,
    levels: str | None = None,
) -> Response:
    engine = request.app.state.engine
    settings = request.app.state.settings
    pid = viewer.principal.project_id
    detail = queries.get_request_record(engine, pid, request_id)
    trace_id = detail.trace_id
    layers = trajectory.by_layer(detail.states)
    charts: dict[str, Any] = {}
    for i, layer in enumerate(layers):
        charts[f"stats-{i}"] = {
            "x": layer["steps"], "xLabel": "step", "yLabel": "value",
            "series": [{"label": name, "values": values}
                       for name, values in layer["stats"].items()],
        }  # fmt: skip
        charts[f"proj-{i}"] = {
            "x": layer["steps"], "xLabel": "step", "yLabel": "projection",
            "series": [{"label": f"dim {d}", "values": values}
                       for d, values in enumerate(layer["projection"])],
        }  # fmt: skip
    decisions = [
        {**d.model_dump(), "table": trajectory.candidate_table(d)} for d in detail.decisions
    ]
    chain = lineage.request_lineage(engine, pid, trace_id, settings.resolved_mlflow_tracking_uri)
    entry = ledger_entry.find_request_event(engine, pid, trace_id, detail.ingested_at)
    return render(
        request, "request.html", viewer, title=f"Request {trace_id[:12]}…", r=detail,
        layers=layers, charts=charts, decisions=decisions, lineage=chain, entry=entry,
        waterfall=_waterfall(engine, pid, trace_id, spans, focus, levels),
        span_page=waterfall.PAGE, focus=focus, levels=levels,
    )  # fmt: skip


def _waterfall(
    engine: Any, pid: int, trace_id: str, page: int, focus: str | None, levels: str | None
) -> waterfall.Waterfall:
    if levels not in (None, "", "all") and not (levels or "").isdigit():
        raise BadRequest("levels: a number of levels, or all")
    depth = int(levels) if levels and levels.isdigit() else None
    found = waterfall.page_of(engine, pid, trace_id, page, focus or None, depth)
    if levels is None and found.trace_total > COLLAPSE_ABOVE:
        found = waterfall.page_of(engine, pid, trace_id, page, focus or None, 1)
    return found


@router.get("/requests/{request_id}/proof")
def proof_fragment(request: Request, request_id: str, viewer: ViewerDep) -> Response:
    """The inclusion-proof status of the request's ledger event (loaded after the page)."""
    engine = request.app.state.engine
    pid = viewer.principal.project_id
    detail = queries.get_request_record(engine, pid, request_id)
    entry = ledger_entry.find_request_event(engine, pid, detail.trace_id, detail.ingested_at)
    status = (
        ledger_entry.inclusion_status(
            engine, pid, entry["seq"], request.app.state.audit_key.public_key()
        )
        if entry
        else None
    )
    return render(request, "partials/proof.html", viewer, title="Inclusion proof",
                  entry=entry, proof=status)  # fmt: skip
