"""RFC 8785 canonical JSON: the RFC's own examples, and values that have no canonical form."""

from __future__ import annotations

import json
import math
import random
import re
import struct
from collections import OrderedDict
from enum import IntEnum, StrEnum

import pytest

from app.audit import jcs

# RFC 8785 Appendix B: IEEE 754 doubles and the text JCS writes for them.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def double(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B)
def test_numbers_are_written_as_ecmascript_writes_them(bits: str, expected: str) -> None:
    assert jcs.dumps(double(bits)) == expected.encode()


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_nan_and_infinity_have_no_canonical_form(bits: str) -> None:
    with pytest.raises(ValueError, match="no JSON form"):
        jcs.dumps({"x": [double(bits)]})


def test_the_rfc_example_canonicalises_byte_for_byte() -> None:
    # RFC 8785 §3.2.3 (input) and §3.2.4 (output).
    source = r"""{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"""
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert jcs.dumps(json.loads(source)) == expected.encode("utf-8")


def test_members_sort_by_utf16_code_units_not_code_points() -> None:
    # RFC 8785 §3.2.3's sorting example: U+1F600 (a surrogate pair, D83D DE00) sorts before
    # U+FB33, although its code point is greater.
    source = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    order = list(json.loads(jcs.dumps(source)).values())
    assert order == [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ]
    assert jcs.dumps({"b": 1, "a": {"d": 2, "c": 3}}) == b'{"a":{"c":3,"d":2},"b":1}'


def test_strings_escape_only_what_json_requires() -> None:
    controls = "".join(chr(c) for c in range(0x20))
    written = jcs.dumps(controls + '"\\/\x7f\u2028é😀').decode("utf-8")
    short = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
    expected = "".join(short.get(c, f"\\u{c:04x}") for c in range(0x20))
    assert written == '"' + expected + '\\"\\\\/\x7f\u2028é😀"'
    assert jcs.dumps("é") == b'"\xc3\xa9"'


def test_random_doubles_round_trip_in_the_ecmascript_grammar() -> None:
    rng = random.Random(8785)
    grammar = re.compile(r"-?(0|[1-9]\d*)(\.\d*[1-9])?(e[+-][1-9]\d*)?")
    for i in range(20_000):
        if i % 2:
            x = double(rng.getrandbits(64).to_bytes(8, "big").hex())
        else:  # the everyday range, and around the thresholds of the two notations
            x = rng.choice([-1, 1]) * rng.random() * 10.0 ** rng.randint(-9, 23)
        if not math.isfinite(x):
            continue
        text = jcs.number(x)
        assert grammar.fullmatch(text), text
        assert float(text) == x, (x, text)
        exponential = "e" in text
        assert exponential == (x != 0 and not 1e-6 <= abs(x) < 1e21), text
    for x in [1.0, 2.0**53, 2.0**53 + 2, 1e16, 1e20, 123456789012345680.0, 0.1, 1e-5]:
        text = jcs.number(x)
        assert grammar.fullmatch(text) and float(text) == x, text
    assert jcs.number(2.0**53 + 2) == "9007199254740994"
    assert jcs.number(1e-5) == "0.00001"


def test_integers_must_survive_as_doubles() -> None:
    assert (
        jcs.dumps([0, -1, 2**53 - 1, -(2**53 - 1)]) == b"[0,-1,9007199254740991,-9007199254740991]"
    )
    for big in (2**53, -(2**53), 10**30):
        with pytest.raises(ValueError, match="send it as a string"):
            jcs.dumps({"n": big})


def test_subclasses_of_json_types_encode_as_their_base() -> None:
    class Colour(StrEnum):
        RED = "red"

    class Level(IntEnum):
        HIGH = 3

    value = OrderedDict([("z", Colour.RED), ("a", (Level.HIGH, True, None))])
    assert jcs.dumps(value) == b'{"a":[3,true,null],"z":"red"}'


@pytest.mark.parametrize(
    "value",
    [
        {1: "non-string key"},
        {"set": {1, 2}},
        {"bytes": b"raw"},
        {"lone surrogate": "\ud800"},
        {"\udfff": "lone surrogate in a key"},
        object(),
    ],
)
def test_values_without_a_canonical_form_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        jcs.dumps(value)


def test_runaway_nesting_is_a_value_error() -> None:
    cyclic: list[object] = []
    cyclic.append(cyclic)
    deep: object = {}
    for _ in range(5000):
        deep = {"a": [deep]}
    for value in (cyclic, deep):
        with pytest.raises(ValueError, match="nested too deeply"):
            jcs.dumps(value)
