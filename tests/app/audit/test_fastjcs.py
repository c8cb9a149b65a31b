"""`fastjcs` gives exactly `jcs`'s bytes, and accepts exactly the canonical encodings."""

from __future__ import annotations

import math
import random
import struct

import orjson
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


def _document(rng: random.Random, depth: int = 0) -> object:
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
        return {str(rng.randrange(1000)) + chr(rng.randrange(0x20, 0x3000)):
                _document(rng, depth + 1) for _ in range(rng.randrange(5))}  # fmt: skip
    return [_document(rng, depth + 1) for _ in range(rng.randrange(5))]


def test_random_documents_match_jcs() -> None:
    rng = random.Random(1)
    for _ in range(20_000):
        value = _document(rng)
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


def test_doubts_cover_every_value_orjson_writes_otherwise_than_jcs() -> None:
    """Alone, or among many values a line each (a verifier's block), every value whose orjson
    bytes are not its JCS bytes has a doubt inside it: only those need the slow check."""
    rng = random.Random(2)
    awkward: list[object] = [5.0, -0.0, 1e16, 1e-6, 1e-7, 1e21, 2.5e-300, "\U0001f600",
                             {"\U0001f600": 1, "\ufb33": 2}]  # fmt: skip
    values = [rng.choice(awkward) if rng.random() < 0.1 else _document(rng) for _ in range(20_000)]
    lines: list[bytes] = []
    differ: list[bool] = []
    for value in values:
        try:
            canonical = jcs.dumps(value)
            line = orjson.dumps(value, option=fastjcs.OPTIONS)
        except (ValueError, TypeError):
            continue
        differ.append(line != canonical)
        lines.append(line)
        assert fastjcs.doubts(line) or line == canonical, value
    assert sum(differ) > 1000
    block = b"\n".join(lines) + b"\n"
    flagged = {block.count(b"\n", 0, at) for at in fastjcs.doubts(block)}
    assert {i for i, d in enumerate(differ) if d} <= flagged


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), {"a": [None, -float("inf")]}, [{"b": float("nan")}]]
)
def test_nan_and_the_infinities_are_refused_as_jcs_refuses_them(value: object) -> None:
    """orjson writes them as `null`: that is not their JCS form, there is none."""
    with pytest.raises(ValueError):
        jcs.dumps(value)
    with pytest.raises(ValueError):
        fastjcs.dumps(value)
    assert fastjcs.dumps({"a": [None, 0.5]}) == jcs.dumps({"a": [None, 0.5]}) == b'{"a":[null,0.5]}'
