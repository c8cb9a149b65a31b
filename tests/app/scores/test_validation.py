"""The rules of score configs and scores, each refusal naming its field."""

from __future__ import annotations

import math

import pytest

from app.scores.validation import (
    ConfigRules,
    InvalidScore,
    ScoreFields,
    check_config,
    check_score,
)

RATING = ConfigRules("rating", "numeric", 1.0, 5.0)
LABEL = ConfigRules("label", "categorical", categories=("good", "bad"))
FLAG = ConfigRules("flag", "boolean")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("rating", "numeric", 5, 1, None), "min_value: 5 is above max_value 1"),
        (("rating", "number", None, None, None), "data_type: 'number' is not one of"),
        (("rating", "numeric", math.nan, None, None), "min_value: nan is not a finite number"),
        (("flag", "boolean", 0, None, None), "min_value: only a numeric score config"),
        (("flag", "boolean", None, None, ["x"]), "categories: only a categorical"),
        (("label", "categorical", None, None, []), "categories: a categorical score config"),
        (("label", "categorical", None, None, ["a", "a"]), "categories: a category is listed"),
        (("label", "categorical", None, None, [3]), "categories: 3 is not a text"),
        (("", "numeric", None, None, None), "name: must be 1 to 128"),
    ],
)
def test_configs_that_make_no_sense_are_refused_naming_the_field(
    args: tuple[object, ...], message: str
) -> None:
    with pytest.raises(InvalidScore) as caught:
        check_config(*args)  # type: ignore[arg-type]
    assert caught.value.status_code == 422
    assert caught.value.message.startswith(message), caught.value.message


def test_a_config_keeps_its_rules() -> None:
    assert check_config("rating", "numeric", 1, 5, None) == RATING
    assert check_config("label", "categorical", None, None, ["good", "bad"]) == LABEL


@pytest.mark.parametrize(
    ("fields", "config", "message"),
    [
        (ScoreFields("rating", 7, "human"), RATING,
         "value: 7 is above the maximum 5 of score config 'rating'"),
        (ScoreFields("rating", 0.5, "human"), RATING,
         "value: 0.5 is below the minimum 1 of score config 'rating'"),
        (ScoreFields("rating", "great", "human"), RATING,
         "value: 'great' is not a number, as score config 'rating' requires"),
        (ScoreFields("rating", True, "human"), RATING, "value: True is not a number"),
        (ScoreFields("label", "meh", "human"), LABEL,
         "value: 'meh' is not one of the categories of score config 'label': good, bad"),
        (ScoreFields("flag", 2, "human"), FLAG, "value: 2 is not true or false"),
        (ScoreFields("rating", 3, "robot"), RATING, "source: 'robot' is not one of"),
        (ScoreFields("rating", 3, "review"), RATING, "source: 'review' is not one of"),
        (ScoreFields("rating", 3, "human", author="x" * 200), RATING, "author: must be"),
        (ScoreFields("rating", 3, "human", correction=["room-2"]), RATING,
         "correction: must be a JSON object"),
        (ScoreFields("rating", 3, "human", correction={"x": math.inf}), RATING,
         "correction: is not exact JSON"),
        (ScoreFields("free", None, "human"), None, "value: None is not a number"),
        (ScoreFields("free", math.inf, "human"), None, "value: inf is not a finite number"),
        (ScoreFields("free", 10**400, "human"), None, "value: "),
    ],
)  # fmt: skip
def test_scores_against_their_config_are_refused_naming_the_field(
    fields: ScoreFields, config: ConfigRules | None, message: str
) -> None:
    with pytest.raises(InvalidScore) as caught:
        check_score(fields, config)
    assert caught.value.message.startswith(message), caught.value.message


def test_without_a_config_the_value_says_its_type() -> None:
    assert check_score(ScoreFields("x", 3, "user"), None).data_type == "numeric"
    flag = check_score(ScoreFields("x", False, "automatic"), None)
    assert (flag.data_type, flag.value, flag.typed_value()) == ("boolean", 0.0, False)
    label = check_score(ScoreFields("x", "good", "human"), None)
    assert (label.data_type, label.string_value, label.value) == ("categorical", "good", None)


def test_scores_that_fit_their_config_are_kept_as_stored() -> None:
    assert check_score(ScoreFields("rating", 5, "human"), RATING).value == 5.0
    assert check_score(ScoreFields("flag", 1, "human"), FLAG).typed_value() is True
    checked = check_score(
        ScoreFields("label", "bad", "human", "ops-7", "wrong room", {"action": "room-2"}), LABEL
    )
    assert checked.typed_value() == "bad"
    assert (checked.author, checked.comment, checked.correction) == (
        "ops-7", "wrong room", {"action": "room-2"},
    )  # fmt: skip


def test_the_docstring_examples_run() -> None:
    import doctest

    from app.scores import validation

    assert doctest.testmod(validation).failed == 0
