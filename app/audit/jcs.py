"""RFC 8785 JSON Canonicalization Scheme (JCS): one byte string per JSON value.

- objects: members sorted by their names compared as UTF-16 code units, `{"a":1,"b":2}`;
- no whitespace anywhere; the output is UTF-8;
- strings: `"` and `\\` escaped, `\\b \\f \\n \\r \\t` for those controls, `\\u00xx` (lower-case
  hex) for the other controls below U+0020, every other character written as itself;
- numbers: as ECMAScript's `Number.prototype.toString` writes the IEEE 754 double (shortest
  digits that round-trip; `1e+21`, `0.000001`, `1e-7`, `-0` as `0`);
- `null`, `true`, `false` as such.

Python values map as: None, bool, str, int, float, any Mapping with str keys (object), list
or tuple (array). Anything without a canonical form raises ValueError: NaN and ±Infinity, an
int outside ±(2^53 - 1) (JSON numbers are doubles, so a bigger int would not survive a
round trip — send it as a string), a str with a lone surrogate, a non-str object key, or any
other type.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring
from operator import itemgetter
from typing import Any

MAX_SAFE_INTEGER = 2**53 - 1


def dumps(value: object) -> bytes:
    """The canonical UTF-8 bytes of `value`.

    >>> dumps({"b": [1, 2.5, None], "a": "é"})
    b'{"a":"\\xc3\\xa9","b":[1,2.5,null]}'
    """
    return utf8(text(value))


def text(value: object) -> str:
    """The canonical JSON of `value` as a str; `utf8` turns it into the bytes that count."""
    try:
        return _text(value)
    except RecursionError:
        raise ValueError("the value is nested too deeply (or contains itself)") from None


def _text(value: object) -> str:
    encoder = _EXACT.get(type(value))
    return encoder(value) if encoder is not None else _encode_subclass(value)


def utf8(canonical_text: str) -> bytes:
    try:
        return canonical_text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a string holds a lone surrogate, which UTF-8 cannot encode") from None


def number(value: float) -> str:
    """ECMAScript's text for a finite double, as JCS requires.

    >>> [number(x) for x in (5.0, 1e21, 1e-7, 0.000001, -0.0, 123.456)]
    ['5', '1e+21', '1e-7', '0.000001', '0', '123.456']
    """
    if not math.isfinite(value):
        raise ValueError(f"{value} has no JSON form; send it as a string or null")
    if value == 0:
        return "0"
    integral = value.is_integer()
    if integral and abs(value) <= MAX_SAFE_INTEGER:
        return int.__repr__(int(value))  # exact, and what the general rule gives
    # repr gives the shortest digits that round-trip, which is what ECMAScript asks for; for a
    # fraction without an exponent (1e-4 <= |value| < 2^52) it is already ECMAScript's text.
    shortest = repr(value)
    if not integral and "e" not in shortest:
        return shortest
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = shortest.lstrip("-").partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + (int(exponent) if exponent else 0)  # value = 0.digits * 10**point
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    k, n = len(digits), point
    if k <= n <= 21:
        result = digits + "0" * (n - k)
    elif 0 < n <= 21:
        result = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        result = "0." + "0" * -n + digits
    else:
        exp = f"e{'+' if n > 0 else '-'}{abs(n - 1)}"
        result = digits[0] + ("." + digits[1:] if k > 1 else "") + exp
    return sign + result


def _integer(value: int) -> str:
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise ValueError(
            f"{value} is outside ±(2^53 - 1) and would lose digits as a JSON number; "
            "send it as a string"
        )
    return int.__repr__(value)


def _utf16_key(item: tuple[str, object]) -> bytes:
    # Big-endian UTF-16 bytes compare exactly as the code units do.
    return item[0].encode("utf-16-be", "surrogatepass")


def _object(value: Mapping[Any, Any]) -> str:
    for key in value:
        if not isinstance(key, str):
            raise ValueError(f"object keys must be strings, not {type(key).__name__}")
    if "".join(value).isascii():  # for ASCII, code point order is UTF-16 order
        members = sorted(value.items(), key=itemgetter(0))
    else:
        members = sorted(value.items(), key=_utf16_key)
    return "{" + ",".join([encode_basestring(k) + ":" + _text(v) for k, v in members]) + "}"


def _array(value: list[Any] | tuple[Any, ...]) -> str:
    return "[" + ",".join(map(_text, value)) + "]"


_EXACT: dict[type, Callable[[Any], str]] = {
    str: encode_basestring,
    int: _integer,
    float: number,
    bool: lambda value: "true" if value else "false",
    type(None): lambda _: "null",
    dict: _object,
    list: _array,
    tuple: _array,
}


def _encode_subclass(value: object) -> str:
    """Subclasses of the JSON types (StrEnum, IntEnum, OrderedDict, ...) as their base."""
    if isinstance(value, str):
        return encode_basestring(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return _integer(int(value))
    if isinstance(value, float):
        return number(float(value))
    if isinstance(value, Mapping):
        return _object(value)
    if isinstance(value, list | tuple):
        return _array(value)
    raise ValueError(f"{type(value).__name__} has no canonical JSON form")
