"""Projects and their API keys: the repository functions behind the CLI and authentication."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from app.audit import ledger
from app.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthenticated
from app.store.engine import read_connection, write_transaction
from app.store.tables import ApiKey, Project
from app.tenancy import keys
from app.tenancy.keys import Scope

DEFAULT_PROJECT = "default"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the project a key belongs to and what the key may do."""

    project_id: int
    project: str
    key_id: str
    scopes: frozenset[Scope]

    def require(self, scope: Scope) -> None:
        if scope not in self.scopes:
            raise Forbidden(
                f"this API key ({self.key_id}…) lacks the {scope.value!r} scope; create one "
                f"with `warden key create --project {self.project} --scope {scope.value}`"
            )


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    project: str
    scopes: list[str]
    name: str
    created_at: datetime
    revoked_at: datetime | None


def create_project(engine: Engine, name: str) -> int:
    if not _NAME.match(name):
        raise BadRequest(
            f"invalid project name {name!r}: use 1-64 lowercase letters, digits, '-', '_' or '.'"
        )
    try:
        with write_transaction(engine) as conn:
            return int(
                conn.execute(insert(Project).values(name=name).returning(Project.id)).scalar_one()
            )
    except IntegrityError as exc:
        raise Conflict(f"project {name!r} exists already") from exc


def list_projects(engine: Engine) -> list[tuple[str, datetime]]:
    with read_connection(engine) as conn:
        return [
            (n, c)
            for n, c in conn.execute(
                select(Project.name, Project.created_at).order_by(Project.name)
            )
        ]


def project_id(engine: Engine, name: str) -> int:
    with read_connection(engine) as conn:
        found = conn.execute(select(Project.id).where(Project.name == name)).scalar_one_or_none()
    if found is None:
        raise NotFound(f"no project named {name!r}; create it with `warden project create {name}`")
    return int(found)


def create_key(
    engine: Engine, server_secret: bytes, project: str, scopes: list[str], name: str = ""
) -> str:
    """Create a key and return it: the only time the whole key is ever visible."""
    if not scopes:
        raise BadRequest("give at least one scope: ingest, read, audit or admin")
    try:
        checked = sorted({Scope(s).value for s in scopes})
    except ValueError as exc:
        raise BadRequest(f"{exc}; scopes are ingest, read, audit and admin") from exc
    pid = project_id(engine, project)
    key = keys.generate()
    with write_transaction(engine) as conn:
        conn.execute(
            insert(ApiKey).values(
                project_id=pid,
                key_id=keys.key_id(key),
                key_hash=keys.key_hash(key, server_secret),
                scopes=checked,
                name=name,
            )
        )
        ledger.append(conn, pid, project, ledger.KEY_CREATED,
                      {"key_id": keys.key_id(key), "scopes": checked, "name": name})  # fmt: skip
    return key


def revoke_key(engine: Engine, key_id: str) -> None:
    with write_transaction(engine) as conn:
        revoked = conn.execute(
            update(ApiKey)
            .where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
            .returning(ApiKey.project_id)
        ).scalar_one_or_none()
        if revoked is not None:
            ledger.append(conn, int(revoked), None, ledger.KEY_REVOKED, {"key_id": key_id})
    if revoked is None:
        raise NotFound(f"no active key with id {key_id!r}; `warden key list` shows the ids")


def list_keys(engine: Engine, project: str | None = None) -> list[KeyInfo]:
    query = (
        select(
            ApiKey.key_id,
            Project.name,
            ApiKey.scopes,
            ApiKey.name,
            ApiKey.created_at,
            ApiKey.revoked_at,
        )
        .join(Project, Project.id == ApiKey.project_id)
        .order_by(Project.name, ApiKey.created_at)
    )
    if project is not None:
        query = query.where(Project.name == project)
    with read_connection(engine) as conn:
        return [KeyInfo(*row) for row in conn.execute(query)]


def authenticate(engine: Engine, server_secret: bytes, authorization: str | None) -> Principal:
    """The principal behind an `Authorization: Bearer KEY` header, or 401."""
    if not authorization:
        raise Unauthenticated("missing API key: send it as 'Authorization: Bearer <key>'")
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthenticated("malformed Authorization header: expected 'Bearer <key>'")
    if not keys.well_formed(key):
        raise Unauthenticated("invalid API key: it is not a Warden key or it was mistyped")
    query = (
        select(ApiKey.project_id, Project.name, ApiKey.key_id, ApiKey.scopes)
        .join(Project, Project.id == ApiKey.project_id)
        .where(ApiKey.key_hash == keys.key_hash(key, server_secret), ApiKey.revoked_at.is_(None))
    )
    with read_connection(engine) as conn:
        row = conn.execute(query).one_or_none()
    if row is None:
        raise Unauthenticated("unknown or revoked API key")
    return Principal(int(row[0]), row[1], row[2], keys.granted(row[3]))


def active_principal(engine: Engine, key_id: str, project_id: int) -> Principal | None:
    """The principal of an active key, by its public id (a dashboard session names it);
    None if the key was revoked or is unknown."""
    query = (
        select(ApiKey.scopes, Project.name)
        .join(Project, Project.id == ApiKey.project_id)
        .where(
            ApiKey.key_id == key_id, ApiKey.project_id == project_id, ApiKey.revoked_at.is_(None)
        )
    )
    with read_connection(engine) as conn:
        row = conn.execute(query).one_or_none()
    if row is None:
        return None
    return Principal(project_id, row.name, key_id, keys.granted(row.scopes))


def ensure_default_project(engine: Engine, server_secret: bytes) -> str | None:
    """On a store with no project yet, create `default` and return a key for it (else None)."""
    with read_connection(engine) as conn:
        if conn.execute(select(func.count()).select_from(Project)).scalar_one():
            return None
    try:
        create_project(engine, DEFAULT_PROJECT)
    except Conflict:
        return None  # another process got there first and printed the key
    return create_key(
        engine, server_secret, DEFAULT_PROJECT, [s.value for s in Scope], name="first run"
    )
