"""`fastjcs` gives exactly `jcs`'s bytes, and accepts exactly the canonical encodings."""

from __future__ import annotations

import math
import random
import struct

import pytest

from app.audit import fastjcs, jcs


def _double(rng: random.Random) -> float:
    kind = rng.randrange(5)
    if kind == 0:
        value: float = struct.unpack("<d", rng.randbytes(8))[0]
    elif kind == 1:
        value = rng.uniform(-1e6, 1e6)
    elif kind == 2:
        value = rng.random() * 10.0 ** rng.randint(-12, 25)
    elif kind == 3:
        value = float(rng.randint(-(2**60), 2**60))
    else:
        value = round(rng.uniform(-1000, 1000), rng.randint(0, 6))
    return value if math.isfinite(value) else 0.5


def test_every_character_is_escaped_as_jcs_escapes_it() -> None:
    text = "".join(chr(c) for c in range(0x800)) + "\u2028\u2029\ufeff\U0001f600/\\\""
    assert fastjcs.dumps(text) == jcs.dumps(text)
    assert fastjcs.dumps({text: text}) == jcs.dumps({text: text})
    assert fastjcs.loads_canonical(jcs.dumps(text)) == text


def test_doubles_are_written_as_jcs_writes_them() -> None:
    rng = random.Random(0)
    for _ in range(200_000):
        value = _double(rng)
        assert fastjcs.dumps(value) == jcs.dumps(value), value
        assert fastjcs.dumps([value, {"v": value}]) == jcs.dumps([value, {"v": value}])


def test_members_are_sorted_by_utf16_code_units() -> None:
    # U+1F600 is D83D DE00 in UTF-16: before U+FB33, though after it by code point.
    value = {"\U0001f600": 1, "\ufb33": 2, "a": 3}
    assert fastjcs.dumps(value) == jcs.dumps(value) == '{"a":3,"\U0001f600":1,"\ufb33":2}'.encode()
    assert fastjcs.loads_canonical(jcs.dumps(value)) == value


def test_random_documents_match_jcs() -> None:
    rng = random.Random(1)

    def document(depth: int) -> object:
        kind = rng.randrange(7 if depth < 4 else 4)
        if kind == 0:
            return rng.randint(-(2**53) + 1, 2**53 - 1)
        if kind == 1:
            return _double(rng)
        if kind == 2:
            return "".join(chr(rng.choice([rng.randrange(0x20, 0x7F), rng.randrange(0x110000)]))
                           for _ in range(rng.randrange(6))).encode("utf-8", "replace").decode(
                               "utf-8", "replace")  # fmt: skip
        if kind == 3:
            return rng.choice([None, True, False])
        if kind in (4, 5):
            return {str(rng.randrange(1000)) + chr(rng.randrange(0x20, 0x3000)): document(depth + 1)
                    for _ in range(rng.randrange(5))}  # fmt: skip
        return [document(depth + 1) for _ in range(rng.randrange(5))]

    for _ in range(20_000):
        value = document(0)
        try:
            expected = jcs.dumps(value)
        except ValueError:
            continue
        assert fastjcs.dumps(value) == expected
        assert jcs.dumps(fastjcs.loads_canonical(expected)) == expected


@pytest.mark.parametrize(
    "text",
    [
        b'{"b":1,"a":2}',  # members out of order
        b'{"a":1,"a":1}',  # a member twice
        b'{"a": 1}',  # whitespace
        b'{"a":5.0}',  # an integral double written with a fraction
        b'{"a":1e-6}',  # JCS writes 0.000001
        b'{"a":1E+21}',  # upper-case exponent
        b'{"a":-0}',
        b'{"a":12345678901234567890}',  # beyond 2^53
        b'{"a":"\\u0041"}',  # an escape JCS does not use
        b'{"a":"\\ud800"}',  # a lone surrogate
        b'{"a":NaN}',
        b'{"a":1}x',
        b"",
    ],
)
def test_non_canonical_encodings_are_refused(text: bytes) -> None:
    with pytest.raises(ValueError):
        fastjcs.loads_canonical(text)


def test_canonical_encodings_that_orjson_writes_otherwise_are_accepted() -> None:
    for value in (0.000001, 1e21, 1e16, 5.0, -0.0, 9007199254740991, 1.5e-7):
        text = jcs.dumps({"a": value})
        assert fastjcs.loads_canonical(text) == {"a": value}
