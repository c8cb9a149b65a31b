"""Request fingerprints: HMAC-SHA256 of the canonical JSON of the input.

Canonical JSON is `json.dumps(value, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)` encoded as UTF-8: keys sorted, no whitespace, non-ASCII characters as
themselves. Anyone holding the secret recomputes a fingerprint with the standard library:

>>> import hashlib, hmac, json
>>> body = json.dumps({"b": 1, "a": "é"}, sort_keys=True, separators=(",", ":"),
...                   ensure_ascii=False).encode()
>>> expected = hmac.new(b"secret", body, hashlib.sha256).hexdigest()
>>> expected == fingerprint({"a": "é", "b": 1}, b"secret")
True

A keyed hash, not a plain one, because inputs are often guessable (a dictionary attack
recovers them from a plain SHA-256).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    """The canonical UTF-8 JSON encoding of `value` (sorted keys, no whitespace)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def fingerprint(value: Any, secret: bytes) -> str:
    """Hex HMAC-SHA256 of `canonical_json(value)` under `secret`.

    >>> fingerprint("a room for 6", b"k")[:16]
    '4c2b7eb7c683acf5'
    """
    return hmac.new(secret, canonical_json(value), hashlib.sha256).hexdigest()
