"""Exceptions the SDK lets reach user code. Everything else it logs and swallows.

CollectorError
├── ConfigurationError     settings that cannot work, or an optional part not installed
└── RecordNotDurable       fail-closed mode: a request's record could not be made durable
"""

from __future__ import annotations


class CollectorError(Exception):
    """Base of the SDK's exceptions."""


class ConfigurationError(CollectorError):
    """Settings that cannot work (e.g. `init()` without a fingerprint secret), or a call that
    needs an optional dependency not installed here (`watch()` without torch)."""


class RecordNotDurable(CollectorError):
    """Fail-closed mode refused a request: its record could neither be delivered nor spooled."""
