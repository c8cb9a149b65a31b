"""API keys: recognisable, self-checking, stored only as a keyed hash."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import Engine, select

from app.errors import BadRequest, Unauthenticated
from app.store.tables import ApiKey
from app.tenancy import keys, projects
from app.tenancy.keys import Scope

SECRET = b"server-secret"


def test_keys_have_the_prefix_and_a_checksum_that_catches_typos() -> None:
    rng = random.Random(3)
    for _ in range(200):
        key = keys.generate()
        assert key.startswith("wdn_") and len(key) == keys.KEY_LENGTH
        assert keys.well_formed(key)
        i = rng.randrange(4, len(key))
        replacement = rng.choice([c for c in "abcXYZ019" if c != key[i]])
        assert not keys.well_formed(key[:i] + replacement + key[i + 1 :])
        assert not keys.well_formed(key[:-1])
    assert not keys.well_formed("sk_" + keys.generate()[3:])


def test_scopes_grant_what_they_say() -> None:
    assert keys.granted(["audit"]) == {Scope.AUDIT, Scope.READ}
    assert keys.granted(["admin"]) == set(Scope)
    assert keys.granted(["ingest"]) == {Scope.INGEST}


def test_a_key_is_stored_only_as_a_keyed_hash(engine: Engine) -> None:
    projects.create_project(engine, "shop")
    key = projects.create_key(engine, SECRET, "shop", ["ingest", "read"])
    with engine.connect() as conn:
        stored = conn.execute(select(ApiKey)).one()
    assert stored.key_hash == keys.key_hash(key, SECRET)
    assert stored.key_hash != keys.key_hash(key, b"another secret")
    assert key not in repr(tuple(stored))
    assert stored.key_id == key[:12]
    principal = projects.authenticate(engine, SECRET, f"Bearer {key}")
    assert (principal.project, principal.scopes) == ("shop", {Scope.INGEST, Scope.READ})
    with pytest.raises(Unauthenticated):
        projects.authenticate(engine, b"another secret", f"Bearer {key}")


def test_key_and_project_input_errors(engine: Engine) -> None:
    with pytest.raises(BadRequest, match="invalid project name"):
        projects.create_project(engine, "Has Spaces")
    projects.create_project(engine, "shop")
    with pytest.raises(BadRequest, match="scopes are"):
        projects.create_key(engine, SECRET, "shop", ["superuser"])
    with pytest.raises(BadRequest, match="at least one scope"):
        projects.create_key(engine, SECRET, "shop", [])


def test_first_run_creates_the_default_project_once(engine: Engine) -> None:
    key = projects.ensure_default_project(engine, SECRET)
    assert key is not None
    assert projects.authenticate(engine, SECRET, f"Bearer {key}").scopes == set(Scope)
    assert projects.ensure_default_project(engine, SECRET) is None
