"""The requests page: the filtered list, a page at a time, and the choices of its filter
form (versions seen, outcomes, request policies, drift windows)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import Engine

from app.dashboard import rollups
from app.drift import reports
from app.drift.read_models import DriftWindow
from app.errors import BadRequest
from app.registry import model_versions
from app.registry.read_models import SeenVersion
from app.store import queries
from app.store.read_models import RequestPage
from policies import Phase, PolicySet

PAGE = 50
POLICY_OUTCOMES = ("deny", "require_review", "warn", "allow")


@dataclass(frozen=True)
class Filters:
    """The filter form as sent (every field a string, empty when unset)."""

    since: str = ""
    until: str = ""
    model: str = ""  # name@version, or a name
    outcome: str = ""
    policy: str = ""
    policy_outcome: str = ""
    drift: str = ""  # a drift report's id: the requests of its window
    fingerprint: str = ""

    def active(self) -> dict[str, str]:
        """The fields set, for the links that keep them."""
        return {name: value for name, value in asdict(self).items() if value}


@dataclass(frozen=True)
class RequestsPage:
    page: RequestPage
    filters: Filters
    active: dict[str, str]
    cursor: str | None
    versions: list[SeenVersion]
    outcomes: list[str]
    policies: list[str]  # the request policies (pre-request, post-decision) by id
    policy_outcomes: tuple[str, ...]
    windows: list[DriftWindow]
    window: DriftWindow | None  # the drift window filtered on


def _time(text: str, name: str) -> datetime | None:
    """A `datetime-local` value (or any ISO 8601 time), taken as UTC without a zone."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name}: {text!r} is not a time like 2026-01-02T15:04") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _model(text: str) -> tuple[str | None, str | None]:
    if not text:
        return None, None
    name, _, version = text.rpartition("@")
    return (name, version) if name else (version, None)


def _filter(
    engine: Engine, project_id: int, form: Filters
) -> tuple[queries.RequestFilter, DriftWindow | None]:
    name, version = _model(form.model)
    flt = queries.RequestFilter(
        since=_time(form.since, "since"), until=_time(form.until, "until"), model_name=name,
        model_version=version, outcome=form.outcome or None,
        fingerprint=form.fingerprint.strip().lower() or None,
        policy_id=form.policy or None, policy_outcome=form.policy_outcome or None,
    )  # fmt: skip
    if not form.drift:
        return flt, None
    if not form.drift.isdigit():
        raise BadRequest("drift: pick a drift window from the list")
    window = reports.window_of(engine, project_id, int(form.drift))
    flt = replace(
        flt,
        model_name=window.model_name, model_version=window.model_version,
        since=datetime.fromtimestamp(window.window_start_unix_nano / 1e9, UTC),
        until=datetime.fromtimestamp(window.window_end_unix_nano / 1e9, UTC),
    )  # fmt: skip
    return flt, window


def requests_page(
    engine: Engine, policy_set: PolicySet, project_id: int, form: Filters, cursor: str | None
) -> RequestsPage:
    flt, window = _filter(engine, project_id, form)
    page = queries.list_requests(engine, project_id, flt, PAGE, cursor or None)
    policies = sorted(
        p.id for p in policy_set.policies if p.phase in (Phase.PRE_REQUEST, Phase.POST_DECISION)
    )
    return RequestsPage(
        page=page, filters=form, active=form.active(), cursor=cursor,
        versions=model_versions.seen_versions(engine, project_id),
        outcomes=rollups.known_outcomes(engine, project_id), policies=policies,
        policy_outcomes=POLICY_OUTCOMES, windows=reports.recent_windows(engine, project_id),
        window=window,
    )  # fmt: skip
