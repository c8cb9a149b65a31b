"""`module:callable` settings: what they load, and the one-line reasons when they cannot."""

from __future__ import annotations

import doctest

import pytest

from app import entry_points
from app.entry_points import EntryPointError, load


def test_the_examples_in_the_docstring_hold() -> None:
    result = doctest.testmod(entry_points, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("json", "write it as module:callable"),
        ("no_such_module_here:run", "cannot import no_such_module_here (ModuleNotFoundError"),
        ("json:no_such_name", "json has no callable 'no_such_name'"),
        ("json:JSONDecodeError.__doc__", "json has no callable"),
    ],
)
def test_a_setting_naming_nothing_callable_says_why(spec: str, reason: str) -> None:
    with pytest.raises(EntryPointError) as caught:
        load("WARDEN_STACK", spec)
    message = str(caught.value)
    assert message.startswith(f"WARDEN_STACK={spec!r}: ") and reason in message
    assert "\n" not in message


def test_the_reference_stack_loads_by_its_setting() -> None:
    answer = load("WARDEN_STACK", "examples.booking.gateway:answer")
    assert callable(answer)
