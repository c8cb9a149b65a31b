"""Policy-as-code: the file format, evaluation with CEL, and tests of policies.

>>> from policies import PolicySet, strongest
>>> gates = PolicySet.load_dir("policies/builtin")
>>> verdict = strongest(gates.evaluate("post_decision", {"decision": {...}}))  # doctest: +SKIP

No I/O beyond reading policy files: the SDK, the service and the CLI all use this package.
"""

from __future__ import annotations

from pathlib import Path

from policies.document import Effect, Match, Phase, Policy, parse
from policies.engine import ROOTS, PolicySet, Verdict, strongest
from policies.errors import PolicyDenied, PolicyError, PolicyLoadError
from policies.testing import CaseResult, run_tests

BUILTIN = Path(__file__).resolve().parent / "builtin"

__all__ = [
    "BUILTIN",
    "ROOTS",
    "CaseResult",
    "Effect",
    "Match",
    "Phase",
    "Policy",
    "PolicyDenied",
    "PolicyError",
    "PolicyLoadError",
    "PolicySet",
    "Verdict",
    "parse",
    "run_tests",
    "strongest",
]
