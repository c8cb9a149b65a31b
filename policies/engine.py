"""Evaluating policies with CEL (`cel-expr-python`, the C++ runtime): compiled once at load.

One interface serves the SDK's inline gates, the service's gateway and the deploy gate:
`PolicySet.evaluate(phase, context) -> list[Verdict]`. A `when` expression that cannot be
evaluated on a context (a missing field, a wrong type) yields a `deny` that says why: a
broken rule never lets traffic through.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext import ext_bindings, ext_math, ext_strings

from policies.document import Effect, Phase, Policy, content_hash, parse
from policies.errors import PolicyLoadError

_MAP = cel.Type.Map(cel.Type.STRING, cel.Type.DYN)

# What each phase's expressions may name (docs/policies.md documents the fields).
ROOTS: dict[Phase, tuple[str, ...]] = {
    Phase.PRE_REQUEST: ("request", "models"),
    Phase.POST_DECISION: ("request", "models", "decision", "predicted"),
    Phase.DEPLOY: ("candidate", "incumbent"),
    Phase.DRIFT: ("report", "model"),
}

# Strongest first: the verdict of a set is its strongest fired effect.
_STRENGTH = [Effect.DENY, Effect.ROLLBACK, Effect.REQUIRE_REVIEW, Effect.WARN, Effect.ALLOW]
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.S)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one policy said about one context."""

    policy_id: str
    version: str
    hash: str
    phase: str
    effect: Effect
    fired: bool
    message: str
    error: bool = False


def _env(phase: Phase) -> Any:
    variables = {root: _MAP for root in ROOTS[phase]}
    variables["project"] = cel.Type.STRING
    return cel.NewEnv(
        variables=variables,
        extensions=[ext_bindings.ExtBindings(), ext_math.ExtMath(), ext_strings.ExtStrings()],
    )


def cel_literal(value: Any) -> str:
    """A Python value (from YAML) as a CEL literal."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("params must be finite numbers")
        return repr(value) if ("." in repr(value) or "e" in repr(value)) else f"{value!r}.0"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(cel_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"{json.dumps(str(k))}: {cel_literal(v)}" for k, v in value.items())
            + "}"
        )
    raise ValueError(f"params cannot hold a {type(value).__name__}")


class CompiledPolicy:
    def __init__(self, policy: Policy, env: Any) -> None:
        self.policy = policy
        try:
            params = cel_literal(policy.params)
        except ValueError as exc:
            raise PolicyLoadError(policy.source, policy.line, f"params: {exc}") from exc
        # Params are bound as a constant inside each expression, so evaluating a whole set
        # needs one activation for the context, not one per policy.
        self.when = self._compile(env, policy.when, params, "when")
        self.parts: list[str | Any] = []
        last = 0
        for m in _TEMPLATE.finditer(policy.message):
            self.parts.append(policy.message[last : m.start()])
            self.parts.append(self._compile(env, m.group(1).strip(), params, "message"))
            last = m.end()
        self.parts.append(policy.message[last:])

    def _compile(self, env: Any, expression: str, params: str, where: str) -> Any:
        try:
            return env.compile(f"cel.bind(params, dyn({params}), ({expression}))")
        except RuntimeError as exc:
            reason = str(exc).replace("INVALID_ARGUMENT: ", "").split("\n")[0]
            raise PolicyLoadError(
                self.policy.source,
                self.policy.line,
                f"{where}: invalid CEL {expression!r}: {reason}",
            ) from None

    def applies(self, project: str | None, names: set[str], roles: set[str]) -> bool:
        match = self.policy.match
        if match.projects and project not in match.projects:
            return False
        if match.models and not names.intersection(match.models):
            return False
        return not (match.roles and not roles.intersection(match.roles))

    def render(self, activation: Any) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = part.eval(activation)
            out.append("<error>" if _is_error(value) else _show(value.plain_value()))
        # Messages are one line, however the YAML folded them.
        return " ".join("".join(out).split())


def _is_error(value: Any) -> bool:
    return bool(value.type() == cel.Type.ERROR)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        # Names gathered from a map come in no set order; a message must be reproducible.
        return json.dumps(sorted(value))
    if isinstance(value, list | dict):
        return json.dumps(value, default=str, sort_keys=True)
    return str(value)


class PolicySet:
    """A loaded, compiled set of policies.

    >>> from policies import PolicySet
    >>> policies = PolicySet.load_dir("policies/builtin")
    >>> verdicts = policies.evaluate("post_decision", context)  # doctest: +SKIP
    """

    def __init__(self, policies: Iterable[Policy]) -> None:
        self.policies = list(policies)
        seen: dict[str, Policy] = {}
        for policy in self.policies:
            if policy.id in seen:
                raise PolicyLoadError(
                    policy.source, policy.line,
                    f"policy id {policy.id!r} is also used at {seen[policy.id].source}",
                )  # fmt: skip
            seen[policy.id] = policy
        self._envs = {phase: _env(phase) for phase in Phase}
        self._compiled: dict[Phase, list[CompiledPolicy]] = {phase: [] for phase in Phase}
        for policy in self.policies:
            self._compiled[policy.phase].append(CompiledPolicy(policy, self._envs[policy.phase]))
        self._fields = {
            phase: _fields_read(self._compiled[phase], ROOTS[phase]) for phase in Phase
        }
        self.hash = content_hash({"policies": sorted(p.hash for p in self.policies)})

    @classmethod
    def load_dir(cls, directory: str | Path) -> PolicySet:
        """Every `*.yaml` policy of a folder (test files `*.test.yaml` excepted)."""
        root = Path(directory)
        if not root.is_dir():
            raise PolicyLoadError(str(root), None, "no such folder")
        policies: list[Policy] = []
        for path in sorted(root.glob("*.yaml")):
            if path.name.endswith(".test.yaml"):
                continue
            policies += parse(path.read_text(), str(path))
        return cls(policies)

    @classmethod
    def from_bundle(cls, bundle: Mapping[str, Any]) -> PolicySet:
        """The set a `to_bundle()` document describes (what the service serves to SDKs)."""
        policies: list[Policy] = []
        for entry in bundle.get("policies", []):
            policies += parse(json.dumps(entry["policy"]), entry.get("source", "<bundle>"))
        return cls(policies)

    def to_bundle(self) -> dict[str, Any]:
        return {
            "hash": self.hash,
            "policies": [{"policy": p.canonical(), "source": p.source} for p in self.policies],
        }

    def get(self, policy_id: str) -> Policy:
        for policy in self.policies:
            if policy.id == policy_id:
                return policy
        raise KeyError(policy_id)

    def evaluate(
        self, phase: Phase | str, context: Mapping[str, Any], only: str | None = None
    ) -> list[Verdict]:
        """The verdict of every policy of `phase` that applies to `context`."""
        phase = Phase(phase)
        compiled = self._compiled[phase]
        if only is not None:
            compiled = [c for c in compiled if c.policy.id == only]
        if not compiled:
            return []
        data: dict[str, Any] = {}
        for root, fields in self._fields[phase].items():
            value = context.get(root) or {}
            if fields is not None and isinstance(value, Mapping):
                # Only what the expressions read crosses into CEL: converting a decision's
                # sixteen candidates that no policy looks at was half the evaluation time.
                value = {k: value[k] for k in fields if k in value}
            data[root] = value
        project = context.get("project")
        data["project"] = project or ""
        activation = self._envs[phase].Activation(data)
        names, roles = _identities(phase, context)
        verdicts = []
        for item in compiled:
            if not item.applies(project, names, roles):
                continue
            verdicts.append(_verdict(item, phase, activation))
        return verdicts


def _fields_read(
    compiled: list[CompiledPolicy], roots: tuple[str, ...]
) -> dict[str, frozenset[str] | None]:
    """Per context root, the fields the phase's expressions read as `root.field`; None when a
    root is used any other way (iterated, indexed, tested with `in`), so it goes in whole."""
    texts = [c.policy.when for c in compiled] + [c.policy.message for c in compiled]
    out: dict[str, frozenset[str] | None] = {}
    for root in roots:
        fields: set[str] = set()
        whole = False
        for text in texts:
            for m in re.finditer(rf"(?<![\w.]){root}\b(\.([A-Za-z_]\w*))?", text):
                if m.group(2) is None:
                    whole = True
                else:
                    fields.add(m.group(2))
        out[root] = None if whole else frozenset(fields)
    return out


def _identities(phase: Phase, data: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """Model names and stage roles of a context, for `match`."""
    if phase in (Phase.PRE_REQUEST, Phase.POST_DECISION):
        models = data.get("models") or {}
        if isinstance(models, dict):
            names = {str(m.get("name")) for m in models.values() if isinstance(m, dict)}
            return names, set(models)
        return set(), set()
    subject = data.get("candidate") if phase is Phase.DEPLOY else data.get("model")
    if isinstance(subject, dict):
        return {str(subject.get("name"))}, {str(subject.get("role"))}
    return set(), set()


def _verdict(item: CompiledPolicy, phase: Phase, activation: Any) -> Verdict:
    policy = item.policy
    value = item.when.eval(activation)
    if _is_error(value) or not isinstance(value.value(), bool):
        reason = (
            str(value.value()) if _is_error(value) else f"'when' gave {value.value()!r}, not a bool"
        )
        return Verdict(
            policy.id, policy.version, policy.hash, phase.value, Effect.DENY, True,
            f"policy {policy.id} could not be evaluated on this context ({reason}); denied",
            error=True,
        )  # fmt: skip
    if value.value():
        return Verdict(
            policy.id, policy.version, policy.hash, phase.value, policy.effect, True,
            item.render(activation),
        )  # fmt: skip
    return Verdict(policy.id, policy.version, policy.hash, phase.value, Effect.ALLOW, False, "")


def strongest(verdicts: Iterable[Verdict]) -> Verdict | None:
    """The verdict that decides: deny over rollback over review over warn; None if none fired."""
    fired = [v for v in verdicts if v.fired]
    if not fired:
        return None
    return min(fired, key=lambda v: _STRENGTH.index(v.effect))
