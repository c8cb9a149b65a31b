"""Exceptions the SDK lets reach user code. Everything else it logs and swallows.

CollectorError
├── ConfigurationError     init() was given settings that cannot work
└── RecordNotDurable       fail-closed mode: a request's record could not be made durable
"""

from __future__ import annotations


class CollectorError(Exception):
    """Base of the SDK's exceptions."""


class ConfigurationError(CollectorError):
    """Raised by `init()` for settings that cannot work (e.g. no endpoint)."""


class RecordNotDurable(CollectorError):
    """Fail-closed mode refused a request: its record could neither be delivered nor spooled."""
