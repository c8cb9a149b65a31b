"""The secrets every process of a deployment must share, checked against the database.

Three keys must be the same in every process that serves one database: the server secret
(keys API-key hashes and seals retained inputs), the fingerprint secret (keys the
fingerprints of inputs the service records itself) and the audit signing key (signs tree
heads). Left unset, each process makes its own in its data folder, which is right for one
machine and wrong for several: replicas would disagree on every API key and sign heads with
different keys. So on PostgreSQL `check_shared_secrets` runs once per process before it
serves, against the `deployment_keys` table (one row per key: its id, who recorded it, when):

- a key that is not configured refuses, unless the data folder already holds one whose id
  the deployment records (a process never makes a key of its own on PostgreSQL);
- a configured key whose id differs from the recorded one refuses;
- a configured key with no record yet is recorded (insert on conflict do nothing, then
  re-read: two first processes starting at once agree on one, or one of them refuses).

Refusals are one line naming the setting to share. Key ids reveal nothing of a key
(app/config.py `secret_key_id`; the signing key's id is the one its heads carry). SQLite is one
machine: no check. `warden keys` (app/cli/keys.py) shows and rotates the records.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Engine, Table, select
from sqlalchemy.exc import OperationalError

from app.audit import heads
from app.audit.ledger import checkpoints
from app.config import FINGERPRINT_FILE, SECRET_FILE, Settings, secret_key_id
from app.errors import WardenError
from app.store.dialect import insert_on_conflict, is_postgresql
from app.store.engine import read_connection, write_transaction
from app.store.tables import DeploymentKey

log = logging.getLogger("warden")
KEYS: Table = DeploymentKey.__table__  # type: ignore[assignment]

SERVER_SECRET = "server_secret"
FINGERPRINT_SECRET = "fingerprint_secret"
AUDIT_SIGNING_KEY = "audit_signing_key"

# name -> (the setting, what it is, the `warden keys rotate` word for it)
SETTINGS = {
    SERVER_SECRET: ("WARDEN_SECRET_KEY", "server secret", "server-secret"),
    FINGERPRINT_SECRET: ("WARDEN_FINGERPRINT_SECRET", "fingerprint secret", "fingerprint-secret"),
    AUDIT_SIGNING_KEY: ("WARDEN_AUDIT_SIGNING_KEY", "audit signing key", "signing-key"),
}


class SharedSecretRefused(WardenError):
    """This process's keys disagree with the deployment's: it must not serve."""


@dataclass(frozen=True)
class ProcessKey:
    """One of this process's keys: its id (None: not configured and no file in the data
    folder yet, so it would be made now), whether it is configured, and where the data
    folder's own is kept."""

    name: str
    key_id: str | None
    configured: bool
    local_file: Path

    @property
    def setting(self) -> str:
        return SETTINGS[self.name][0]


@dataclass(frozen=True)
class Record:
    """The deployment's record of a key."""

    name: str
    key_id: str
    recorded_at: datetime
    recorded_by: str

    def describe(self) -> str:
        at = self.recorded_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"key id {self.key_id}, recorded by {self.recorded_by} at {at}"


def process_keys(
    settings: Settings, audit_key: Ed25519PrivateKey | None = None
) -> list[ProcessKey]:
    """This process's three keys, read without making any; `audit_key` is the signing key
    already loaded, if it is."""
    keys = []
    for name, configured, file in (
        (SERVER_SECRET, settings.secret_key, SECRET_FILE),
        (FINGERPRINT_SECRET, settings.fingerprint_secret, FINGERPRINT_FILE),
    ):
        secret = configured.encode() if configured else settings.existing_local_secret(file)
        kid = secret_key_id(name, secret) if secret is not None else None
        keys.append(ProcessKey(name, kid, bool(configured), settings.data_dir / file))
    local_key = settings.data_dir / checkpoints.KEY_FILE
    configured_key = settings.audit_signing_key is not None
    if audit_key is None and (configured_key or local_key.exists()):
        # A configured file that is missing or unreadable says so here (a one-line error).
        audit_key = checkpoints.signing_key(settings)
    kid = heads.key_id(audit_key.public_key()) if audit_key is not None else None
    keys.append(ProcessKey(AUDIT_SIGNING_KEY, kid, configured_key, local_key))
    return keys


def recorded(conn: Connection) -> dict[str, Record]:
    """The deployment's records, by key name."""
    return {
        row.name: Record(row.name, row.key_id, row.recorded_at, row.recorded_by)
        for row in conn.execute(select(KEYS))
    }


def recorder() -> str:
    """Who records a key: this host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def check_shared_secrets(
    engine: Engine, settings: Settings, audit_key: Ed25519PrivateKey | None = None
) -> None:
    """Refuse (SharedSecretRefused, one line) unless this process's keys are the
    deployment's; record the configured keys the deployment has no record of yet. On SQLite,
    nothing: one machine, one data folder."""
    if not is_postgresql(engine):
        return
    mine = process_keys(settings, audit_key)
    try:
        with read_connection(engine) as conn:
            records = recorded(conn)
    except OperationalError as exc:
        # An embedded app starts while the database is down (its /readyz says 503 until it
        # is back): a key it was not given can never be confirmed, so that still refuses; the
        # configured ones are compared by the next process that starts with the database up.
        for key in mine:
            if not key.configured:
                _refuse_unless_shared(key, None)
        log.warning("could not check the shared keys against the database: %s",
                    str(exc).splitlines()[0])  # fmt: skip
        return
    for key in mine:
        _refuse_unless_shared(key, records.get(key.name))
    new = [
        {"name": k.name, "key_id": k.key_id, "recorded_at": datetime.now(UTC),
         "recorded_by": recorder()}
        for k in mine
        if k.name not in records
    ]  # fmt: skip
    if not new:
        return
    with write_transaction(engine) as conn:
        conn.execute(insert_on_conflict(conn, KEYS, ["name"]), new)
        records = recorded(conn)
    # Another process may have recorded a key of its own meanwhile: its record stands.
    for key in mine:
        _refuse_unless_shared(key, records.get(key.name))


def _refuse_unless_shared(key: ProcessKey, record: Record | None) -> None:
    setting, what, rotate = SETTINGS[key.name]
    if not key.configured:
        if record is not None and key.key_id == record.key_id:
            return  # the data folder's own is the deployment's: a key file copied here
        share = (
            "set it to the same key file on every process"
            if key.name == AUDIT_SIGNING_KEY
            else "set it (the same value) on every process"
        )
        keep = (
            f" (to keep the one in {key.local_file}, point it at that file"
            if key.name == AUDIT_SIGNING_KEY
            else f" (to keep the one in {key.local_file}, set it to that file's contents"
        )
        keep = f"{keep}, once)" if key.key_id is not None and record is None else ""
        raise SharedSecretRefused(
            f"{setting} is not set: on PostgreSQL every process of the deployment must share "
            f"one {what}; {share} (`warden keys init DIR` makes one){keep}"
        )
    if record is not None and key.key_id != record.key_id:
        raise SharedSecretRefused(
            f"{setting} differs from the one the deployment records ({record.describe()}): "
            f"set the deployment's {what} on this process, or rotate it with "
            f"`warden keys rotate {rotate}`"
        )


def replace_record(engine: Engine, name: str, key_id: str) -> Record | None:
    """Make `key_id` the deployment's `name` key (a rotation); returns the record it
    replaced (None: there was none)."""
    row: Mapping[str, object] = {
        "name": name, "key_id": key_id, "recorded_at": datetime.now(UTC),
        "recorded_by": f"warden keys rotate ({recorder()})",
    }  # fmt: skip
    with write_transaction(engine) as conn:
        before = recorded(conn).get(name)
        stmt = insert_on_conflict(
            conn, KEYS, ["name"],
            set_=lambda excluded: {
                "key_id": excluded.key_id, "recorded_at": excluded.recorded_at,
                "recorded_by": excluded.recorded_by,
            },
        )  # fmt: skip
        conn.execute(stmt, [row])
    return before
