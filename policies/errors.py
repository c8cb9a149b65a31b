"""Exceptions of the policy package.

PolicyError
├── PolicyLoadError     a policy file is invalid: names the file, the line and the reason
└── PolicyDenied        a gate said `deny`: carries the policy's id, version and message
"""

from __future__ import annotations


class PolicyError(Exception):
    """Base of the policy package's exceptions."""


class PolicyLoadError(PolicyError):
    """A policy (or policy test) file that cannot be used, with where and why."""

    def __init__(self, source: str, line: int | None, reason: str) -> None:
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason


class PolicyDenied(PolicyError):
    """A `deny` verdict: the request (or promotion) must not go on.

    The stack catches it to fall back, e.g. hand the request over to a person.
    """

    def __init__(self, policy_id: str, version: str, message: str, policy_hash: str = "") -> None:
        super().__init__(f"denied by policy {policy_id} v{version}: {message}")
        self.policy_id = policy_id
        self.version = version
        self.message = message
        self.policy_hash = policy_hash
