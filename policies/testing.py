"""Tests of policies, written beside them: `<id>.test.yaml` next to `<id>.yaml`.

```yaml
policy: planner-confidence-floor
cases:
  - name: a confident plan goes ahead
    context: {decision: {confidence: 0.9}}
    expect: allow
  - name: an unsure plan waits for a person
    context: {decision: {confidence: 0.2}}
    expect: require_review
    message: "confidence 0.2 is below 0.6"      # must appear in the verdict's message
```

`expect` is an effect, or `not_applicable` when the policy's `match` must skip the context.
`warden policy test DIR` runs them all, like `opa test`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from policies.engine import PolicySet
from policies.errors import PolicyLoadError

NOT_APPLICABLE = "not_applicable"


@dataclass(frozen=True, slots=True)
class CaseResult:
    source: str
    policy_id: str
    name: str
    passed: bool
    detail: str


def run_tests(directory: str | Path) -> list[CaseResult]:
    """Load the policies of a folder and run every test file beside them."""
    root = Path(directory)
    policies = PolicySet.load_dir(root)
    results: list[CaseResult] = []
    for path in sorted(root.glob("*.test.yaml")):
        results += run_file(policies, path)
    return results


def run_file(policies: PolicySet, path: Path) -> list[CaseResult]:
    source = str(path)
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PolicyLoadError(source, None, f"invalid YAML: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("cases"), list):
        raise PolicyLoadError(source, None, "a test file needs 'policy' and a list of 'cases'")
    policy_id = str(document.get("policy", ""))
    try:
        policy = policies.get(policy_id)
    except KeyError:
        raise PolicyLoadError(source, None, f"no policy {policy_id!r} in this folder") from None
    results = []
    for number, case in enumerate(document["cases"], 1):
        if not isinstance(case, dict) or "expect" not in case:
            raise PolicyLoadError(source, None, f"case {number} needs 'context' and 'expect'")
        name = str(case.get("name", f"case {number}"))
        results.append(_run_case(policies, policy.phase.value, policy_id, source, name, case))
    return results


def _run_case(
    policies: PolicySet, phase: str, policy_id: str, source: str, name: str, case: dict[str, Any]
) -> CaseResult:
    verdicts = policies.evaluate(phase, case.get("context") or {}, only=policy_id)
    actual = verdicts[0].effect.value if verdicts else NOT_APPLICABLE
    message = verdicts[0].message if verdicts else ""
    expected = str(case["expect"])
    wanted = case.get("message")
    if actual != expected:
        detail = f"expected {expected}, got {actual}" + (f" ({message})" if message else "")
        return CaseResult(source, policy_id, name, False, detail)
    if wanted is not None and str(wanted) not in message:
        return CaseResult(
            source, policy_id, name, False, f"message {message!r} does not contain {wanted!r}"
        )
    return CaseResult(source, policy_id, name, True, actual)
