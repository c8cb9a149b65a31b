"""The callables that settings name as `module:callable`: the gateway's stack (`WARDEN_STACK`),
the demo (`WARDEN_DEMO`) and the replay (`WARDEN_REPLAY`).

The service never imports a stack by name; it imports whatever the setting names, when it is
first needed, so the reference stack in `examples/` is one choice among any a user writes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


class EntryPointError(ValueError):
    """A `module:callable` setting that names nothing callable; the message says which and why."""


def load(setting: str, spec: str) -> Callable[..., Any]:
    """The callable `spec` names, imported now.

    >>> load("WARDEN_STACK", "json:dumps")([1])
    '[1]'
    >>> load("WARDEN_STACK", "json")
    Traceback (most recent call last):
    ...
    app.entry_points.EntryPointError: WARDEN_STACK='json': write it as module:callable
    """
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise EntryPointError(f"{setting}={spec!r}: write it as module:callable")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # whatever the module raises on import, it cannot be loaded
        reason = (str(exc).splitlines() or [""])[0]
        raise EntryPointError(
            f"{setting}={spec!r}: cannot import {module_name} ({type(exc).__name__}: {reason})"
        ) from exc
    target = getattr(module, name, None)
    if not callable(target):
        raise EntryPointError(f"{setting}={spec!r}: {module_name} has no callable {name!r}")
    return target  # type: ignore[no-any-return]
