"""API key format: `wdn_` + 32 random base62 characters + a 6-character CRC32 checksum.

The fixed prefix lets secret scanners spot a leaked key; the checksum lets the service refuse
a mistyped or truncated key without touching the database. Keys are stored only as
HMAC-SHA256 under the server secret, so a copy of the database does not yield usable keys.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import zlib
from enum import StrEnum

PREFIX = "wdn_"
_ALPHABET = string.digits + string.ascii_letters
_BODY_LENGTH = 32
_CHECKSUM_LENGTH = 6
KEY_LENGTH = len(PREFIX) + _BODY_LENGTH + _CHECKSUM_LENGTH
_KEY_ID_LENGTH = len(PREFIX) + 8


class Scope(StrEnum):
    INGEST = "ingest"
    READ = "read"
    AUDIT = "audit"
    ADMIN = "admin"


# What each scope grants: `audit` reads everything, `admin` may do anything.
GRANTS: dict[Scope, frozenset[Scope]] = {
    Scope.INGEST: frozenset({Scope.INGEST}),
    Scope.READ: frozenset({Scope.READ}),
    Scope.AUDIT: frozenset({Scope.AUDIT, Scope.READ}),
    Scope.ADMIN: frozenset(Scope),
}


def granted(scopes: list[str]) -> frozenset[Scope]:
    result: set[Scope] = set()
    for scope in scopes:
        result |= GRANTS.get(Scope(scope), frozenset())
    return frozenset(result)


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), _CHECKSUM_LENGTH)


def generate() -> str:
    """A new random key, e.g. `wdn_3fK...` (44 characters)."""
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_BODY_LENGTH))
    return PREFIX + body + _checksum(body)


def well_formed(key: str) -> bool:
    """True when the key has Warden's shape and its checksum matches."""
    if len(key) != KEY_LENGTH or not key.startswith(PREFIX):
        return False
    body = key[len(PREFIX) : len(PREFIX) + _BODY_LENGTH]
    if any(c not in _ALPHABET for c in body):
        return False
    return hmac.compare_digest(key[-_CHECKSUM_LENGTH:], _checksum(body))


def key_id(key: str) -> str:
    """The public identifier of a key: its prefix and first 8 characters."""
    return key[:_KEY_ID_LENGTH]


def key_hash(key: str, server_secret: bytes) -> bytes:
    return hmac.new(server_secret, key.encode(), hashlib.sha256).digest()
