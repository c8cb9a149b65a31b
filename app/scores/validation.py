"""What a score config may say, and what a score may hold under it (or, without one, under
the type its value has). Pure: the callers read the config and store the result.

Every refusal is an `InvalidScore` (422) whose message starts with the field it is about,
e.g. `value: 7 is above the maximum 5 of score config 'rating'`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.audit import jcs
from app.errors import Unprocessable

NUMERIC = "numeric"
BOOLEAN = "boolean"
CATEGORICAL = "categorical"
DATA_TYPES = (NUMERIC, BOOLEAN, CATEGORICAL)
# Who gave a score. `review` is kept for what the review queue decides: callers cannot send it.
SOURCES = ("human", "user", "automatic")
REVIEW = "review"
# The name of the score a person gives when they overrode the decision.
CORRECTION = "correction"

NAME_LIMIT = 128
AUTHOR_LIMIT = 128
CATEGORY_LIMIT = 256
CATEGORIES_LIMIT = 100


class InvalidScore(Unprocessable):
    """A score config or a score that breaks a rule; `field` names what to change."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


@dataclass(frozen=True, slots=True)
class ConfigRules:
    """A score config as the checks use it."""

    name: str
    data_type: str
    min_value: float | None = None
    max_value: float | None = None
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ScoreFields:
    """A score as a caller sends it (the API's body, or a `warden.score` span)."""

    name: Any
    value: Any
    source: Any
    author: Any = None
    comment: Any = None
    correction: Any = None


@dataclass(frozen=True, slots=True)
class CheckedScore:
    """A score that passed: its value as stored (numbers and booleans in `value`,
    categories in `string_value`)."""

    name: str
    data_type: str
    value: float | None
    string_value: str | None
    source: str
    author: str | None
    comment: str | None
    correction: dict[str, Any] | None

    def typed_value(self) -> float | bool | str | None:
        return typed_value(self.data_type, self.value, self.string_value)


def typed_value(
    data_type: str, value: float | None, string_value: str | None
) -> float | bool | str | None:
    """A stored value back in its type: a boolean as true/false, a category as its text."""
    if data_type == BOOLEAN:
        return None if value is None else value != 0
    if data_type == CATEGORICAL:
        return string_value
    return value


def shown(value: Any) -> str:
    """A value as a message shows it: 5.0 as 5, text quoted."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= NAME_LIMIT or name != name.strip():
        raise InvalidScore(
            "name", f"must be 1 to {NAME_LIMIT} characters without surrounding spaces"
        )
    return name


def check_config(
    name: str,
    data_type: str,
    min_value: float | None,
    max_value: float | None,
    categories: Sequence[Any] | None,
) -> ConfigRules:
    """The rules of a config, or `InvalidScore` naming what makes no sense in it.

    >>> check_config("rating", "numeric", 1, 5, None).max_value
    5.0
    >>> check_config("rating", "numeric", 5, 1, None)
    Traceback (most recent call last):
    app.scores.validation.InvalidScore: min_value: 5 is above max_value 1
    """
    check_name(name)
    if data_type not in DATA_TYPES:
        raise InvalidScore("data_type", f"{data_type!r} is not one of {', '.join(DATA_TYPES)}")
    low = _bound("min_value", min_value)
    high = _bound("max_value", max_value)
    labels = tuple(categories or ())
    if data_type != NUMERIC and (low is not None or high is not None):
        field = "min_value" if low is not None else "max_value"
        raise InvalidScore(field, f"only a numeric score config has a range, not a {data_type}")
    if low is not None and high is not None and low > high:
        raise InvalidScore("min_value", f"{shown(low)} is above max_value {shown(high)}")
    if data_type != CATEGORICAL and labels:
        raise InvalidScore("categories", "only a categorical score config has categories")
    if data_type == CATEGORICAL:
        if not labels or len(labels) > CATEGORIES_LIMIT:
            raise InvalidScore(
                "categories", f"a categorical score config needs 1 to {CATEGORIES_LIMIT}"
            )
        for label in labels:
            if not isinstance(label, str) or not 0 < len(label) <= CATEGORY_LIMIT:
                raise InvalidScore(
                    "categories", f"{label!r} is not a text of 1 to {CATEGORY_LIMIT} characters"
                )
        if len(set(labels)) != len(labels):
            raise InvalidScore("categories", "a category is listed twice")
    return ConfigRules(name, data_type, low, high, labels)


def _bound(field: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidScore(field, f"{value!r} is not a finite number")
    return float(value)


def check_score(fields: ScoreFields, config: ConfigRules | None) -> CheckedScore:
    """The score as it will be stored, or `InvalidScore` naming the field at fault.

    Without a config the value's own type decides: a number is numeric, true/false boolean,
    a text categorical.

    >>> rating = ConfigRules("rating", "numeric", 1.0, 5.0)
    >>> check_score(ScoreFields("rating", 4, "human"), rating).value
    4.0
    >>> check_score(ScoreFields("rating", 7, "human"), rating)
    Traceback (most recent call last):
    app.scores.validation.InvalidScore: value: 7 is above the maximum 5 of score config 'rating'
    """
    name = check_name(fields.name)
    if fields.source not in SOURCES:
        raise InvalidScore("source", f"{fields.source!r} is not one of {', '.join(SOURCES)}")
    data_type, value, text = (
        _inferred(fields.value) if config is None else _against(fields.value, config)
    )
    author = fields.author
    if author is not None and (not isinstance(author, str) or len(author) > AUTHOR_LIMIT):
        raise InvalidScore("author", f"must be a text of at most {AUTHOR_LIMIT} characters")
    comment = fields.comment
    if comment is not None and not isinstance(comment, str):
        raise InvalidScore("comment", "must be a text")
    correction = fields.correction
    if correction is not None and not isinstance(correction, dict):
        raise InvalidScore(
            "correction",
            f"must be a JSON object (the action chosen instead), not {type(correction).__name__}",
        )
    if correction is not None:
        try:
            jcs.dumps(correction)
        except ValueError as exc:
            raise InvalidScore("correction", f"is not exact JSON ({exc})") from None
    return CheckedScore(
        name, data_type, value, text, fields.source, author or None, comment or None, correction
    )


def _inferred(value: Any) -> tuple[str, float | None, str | None]:
    if isinstance(value, bool):
        return BOOLEAN, 1.0 if value else 0.0, None
    if isinstance(value, int | float):
        return NUMERIC, _finite(value), None
    if isinstance(value, str):
        return CATEGORICAL, None, _category(value)
    raise InvalidScore("value", f"{value!r} is not a number, true/false or a category (text)")


def _against(value: Any, config: ConfigRules) -> tuple[str, float | None, str | None]:
    where = f"score config {config.name!r}"
    if config.data_type == BOOLEAN:
        if isinstance(value, bool):
            return BOOLEAN, 1.0 if value else 0.0, None
        if isinstance(value, int | float) and value in (0, 1):
            return BOOLEAN, float(value), None
        raise InvalidScore("value", f"{shown(value)} is not true or false, as {where} requires")
    if config.data_type == CATEGORICAL:
        if isinstance(value, str) and value in config.categories:
            return CATEGORICAL, None, value
        raise InvalidScore(
            "value",
            f"{shown(value)} is not one of the categories of {where}: "
            + ", ".join(config.categories),
        )
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidScore("value", f"{shown(value)} is not a number, as {where} requires")
    number = _finite(value)
    if config.max_value is not None and number > config.max_value:
        raise InvalidScore(
            "value", f"{shown(number)} is above the maximum {shown(config.max_value)} of {where}"
        )
    if config.min_value is not None and number < config.min_value:
        raise InvalidScore(
            "value", f"{shown(number)} is below the minimum {shown(config.min_value)} of {where}"
        )
    return NUMERIC, number, None


def _finite(value: int | float) -> float:
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise InvalidScore("value", f"{value!r} is not a finite number")
    return number


def _category(value: str) -> str:
    if not 0 < len(value) <= CATEGORY_LIMIT:
        raise InvalidScore("value", f"a category must be 1 to {CATEGORY_LIMIT} characters")
    return value
