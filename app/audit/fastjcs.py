"""RFC 8785 (JCS) at C speed where it is safe: orjson's output, checked to be JCS's too.

orjson with sorted keys and 53-bit integers writes the same bytes as JCS (`jcs`) for every
JSON value except:

- doubles written differently: integral ones (orjson `5.0`, `-0.0`, `1e+16`; JCS `5`, `0`,
  `10000000000000000`) and some exponent forms (orjson `1e-6`; JCS `0.000001`);
- object members whose names differ at a character above U+FFFF against one in
  U+E000-U+FFFF (orjson sorts by code point, JCS by UTF-16 code unit);
- NaN and the infinities, which orjson writes as `null` and JCS refuses (`dumps` looks for
  them when its bytes hold a `null`; parsed bytes never hold one).

String escaping is identical (tests/app/audit/test_fastjcs.py checks every character class),
and every other double orjson writes is JCS's text (fuzzed there too). So when orjson's bytes
hold no `.0` closing a number, no digit-`e`-sign and no four-byte UTF-8 sequence, they are
the JCS bytes; when they might not be, the pure-Python `jcs` decides. The tests look at bytes,
strings included, so they are conservative: a string that merely looks like a number only
costs the slow path.

`doubts` runs those tests over many values at once (a verifier's block of lines), so that
checking one value is `orjson.dumps(orjson.loads(data), option=OPTIONS) == data` unless a
doubt falls inside it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from app.audit import jcs

OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
# Each pattern starts with one literal byte, and a rare one: the regex engine then skips to
# it as fast as `bytes.count` runs, several times faster than `bytes.find` looks for two bytes
# or than it tries an alternation of the patterns at every byte.
_INTEGRAL = re.compile(rb"\.0(?:[,}\]\n]|\Z)")
_NEGATIVE_EXPONENT = re.compile(rb"-(?<=e-)\d")
_POSITIVE_EXPONENT = re.compile(rb"e\+\d")
# Lead bytes of four-byte UTF-8 sequences: a character above U+FFFF, whose members may sort
# differently.
_ASTRAL = re.compile(rb"[\xf0-\xff]")


def doubts(data: bytes) -> list[int]:
    """Offsets in orjson-written `data` (one value, or many, a line each) of the bytes that
    might make it differ from JCS (see the module docstring); unordered, empty when none.

    >>> doubts(b'{"a":[0.5,"x"]}\\n{"b":5.0}\\n')
    [22]
    """
    found = [m.start() for m in _INTEGRAL.finditer(data)]
    found += [m.start() - 1 for m in _NEGATIVE_EXPONENT.finditer(data)]
    if b"+" in data:
        found += [m.start() for m in _POSITIVE_EXPONENT.finditer(data)]
    if not data.isascii():
        found += [m.start() for m in _ASTRAL.finditer(data)]
    return found


def _maybe_not_jcs(data: bytes) -> bool:
    """True when orjson-written `data` might differ from JCS (see the module docstring)."""
    return bool(
        _INTEGRAL.search(data)
        or _NEGATIVE_EXPONENT.search(data)
        or (b"+" in data and _POSITIVE_EXPONENT.search(data))
        or (not data.isascii() and _ASTRAL.search(data))
    )


def dumps(value: Any) -> bytes:
    """The JCS bytes of `value`: the same as `jcs.dumps`, usually many times faster.

    >>> dumps({"b": 1.0, "a": [0.5, "é"]}) == jcs.dumps({"b": 1.0, "a": [0.5, "é"]})
    True
    """
    try:
        fast = orjson.dumps(value, option=OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        return jcs.dumps(value)  # raises ValueError saying what has no canonical form
    if _maybe_not_jcs(fast) or (b"null" in fast and _not_finite(value)):
        return jcs.dumps(value)  # the JCS bytes, or ValueError for a NaN or an infinity
    return fast


def _not_finite(value: Any) -> bool:
    """Whether `value` holds a NaN or an infinity anywhere."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_not_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_not_finite(item) for item in value)
    return False


def loads_canonical(data: bytes) -> Any:
    """The JSON value `data` encodes, if `data` is exactly its JCS form; else ValueError.

    This is what makes hashing stored bytes sound: bytes that pass have one meaning, the
    one every conforming parser reads, and are the bytes the writer had to hash.

    >>> loads_canonical(b'{"a":1,"b":[true,null,0.5]}')
    {'a': 1, 'b': [True, None, 0.5]}
    >>> loads_canonical(b'{"b":1,"a":2}')
    Traceback (most recent call last):
    ...
    ValueError: not canonical JSON (RFC 8785)
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ValueError("not JSON") from None
    try:
        fast: bytes | None = orjson.dumps(value, option=OPTIONS)
    except orjson.JSONEncodeError:
        fast = None  # an integer beyond 53 bits: JCS refuses it below
    if fast == data and not _maybe_not_jcs(data):
        return value
    if fast is None:  # digits beyond 2^53 are a double's (1e16 is `10000000000000000`)
        value = json.loads(data, parse_int=_number)
    try:
        if jcs.dumps(value) == data:  # e.g. 0.000001, which orjson writes as 1e-6
            return value
    except ValueError:
        pass
    raise ValueError("not canonical JSON (RFC 8785)")


def _number(digits: str) -> int | float:
    value = int(digits)
    return value if abs(value) <= jcs.MAX_SAFE_INTEGER else float(value)
