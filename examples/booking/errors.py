"""Exceptions of the booking example.

BookingError
 ├── IntentParseError   the language-model stage gave no usable intent
 └── RegistryError      a world model could not be registered or loaded from MLflow
"""

from __future__ import annotations


class BookingError(Exception):
    """Base of every error the booking example raises on purpose."""


class IntentParseError(BookingError):
    """The language-model stage failed or answered something that is not an intent."""


class RegistryError(BookingError):
    """The MLflow registry has no such model, or it cannot be rebuilt from its artifacts."""
