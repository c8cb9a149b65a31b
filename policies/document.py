"""The policy file format: YAML documents, validated with the line of every mistake.

A policy:

```yaml
id: planner-confidence-floor         # lowercase letters, digits, '-', '_', '.'
version: "1"
description: The planner must be confident enough to act without a person.
phase: post_decision                 # pre_request | post_decision | deploy | drift
match:                               # optional; an empty or missing list matches all
  projects: [booking]
  models: [booking-world-model]      # any stage's model name
  roles: [planner]                   # any stage role present in the context
params:                              # optional; `params` in the expressions
  min_confidence: 0.6
when: decision.confidence < params.min_confidence       # CEL, true = the policy fires
effect: require_review               # allow | deny | warn | require_review | rollback
message: "confidence {{ decision.confidence }} is below {{ params.min_confidence }}"
```

`{{ ... }}` in a message is a CEL expression too, so the message names the values that
tripped the policy. The content hash is the SHA-256 of the policy's canonical JSON: it
changes with what the policy says, not with comments or layout.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from policies.errors import PolicyLoadError


class Phase(enum.StrEnum):
    PRE_REQUEST = "pre_request"
    POST_DECISION = "post_decision"
    DEPLOY = "deploy"
    DRIFT = "drift"


class Effect(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    WARN = "warn"
    REQUIRE_REVIEW = "require_review"
    ROLLBACK = "rollback"


# Which effects make sense in which phase: a rollback acts on a serving alias, so only a drift
# verdict can trigger one; a request cannot be rolled back.
ALLOWED_EFFECTS: dict[Phase, frozenset[Effect]] = {
    Phase.PRE_REQUEST: frozenset({Effect.ALLOW, Effect.DENY, Effect.WARN, Effect.REQUIRE_REVIEW}),
    Phase.POST_DECISION: frozenset({Effect.ALLOW, Effect.DENY, Effect.WARN, Effect.REQUIRE_REVIEW}),
    Phase.DEPLOY: frozenset({Effect.ALLOW, Effect.DENY, Effect.WARN, Effect.REQUIRE_REVIEW}),
    Phase.DRIFT: frozenset({Effect.ALLOW, Effect.WARN, Effect.ROLLBACK}),
}

_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")
_FIELDS = {"id", "version", "description", "phase", "match", "params", "when", "effect", "message"}
_REQUIRED = ("id", "version", "description", "phase", "when", "effect", "message")
_MATCH_FIELDS = {"projects", "models", "roles"}


@dataclass(frozen=True)
class Match:
    projects: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    id: str
    version: str
    description: str
    phase: Phase
    when: str
    effect: Effect
    message: str
    match: Match = field(default_factory=Match)
    params: dict[str, Any] = field(default_factory=dict)
    source: str = "<string>"
    line: int = 1
    hash: str = ""

    def canonical(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "description": self.description,
            "phase": self.phase.value,
            "match": {
                "projects": list(self.match.projects),
                "models": list(self.match.models),
                "roles": list(self.match.roles),
            },
            "params": self.params,
            "when": self.when,
            "effect": self.effect.value,
            "message": self.message,
        }


def content_hash(document: dict[str, Any]) -> str:
    body = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


def parse(text: str, source: str = "<string>") -> list[Policy]:
    """Every policy in a YAML text (one per document); `PolicyLoadError` on the first mistake.

    >>> [p.id for p in parse(EXAMPLE)]
    ['planner-confidence-floor']
    """
    try:
        nodes = list(yaml.compose_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise PolicyLoadError(source, line, f"invalid YAML: {reason}") from exc
    return [_policy(node, source) for node in nodes if node is not None]


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _mapping(node: yaml.Node, source: str, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise PolicyLoadError(source, _line(node), f"{what} must be a mapping")
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key, value in node.value:
        name = str(key.value)
        if name in out:
            raise PolicyLoadError(source, _line(key), f"{name!r} is given twice")
        out[name] = (key, value)
    return out


def _scalar(node: yaml.Node, source: str, name: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or node.value == "":
        raise PolicyLoadError(source, _line(node), f"{name!r} must be a non-empty text")
    return str(node.value)


def _value(node: yaml.Node) -> Any:
    return yaml.safe_load(yaml.serialize(node))


def _policy(node: yaml.Node, source: str) -> Policy:
    fields = _mapping(node, source, "a policy")
    for name, (key, _) in fields.items():
        if name not in _FIELDS:
            raise PolicyLoadError(
                source, _line(key), f"unknown field {name!r} (fields: {', '.join(sorted(_FIELDS))})"
            )
    for name in _REQUIRED:
        if name not in fields:
            raise PolicyLoadError(source, _line(node), f"missing required field {name!r}")
    values = {name: _scalar(value, source, name) for name, (_, value) in fields.items()
              if name in _REQUIRED}  # fmt: skip
    if not _ID.match(values["id"]):
        raise PolicyLoadError(
            source, _line(fields["id"][1]), "id: use lowercase letters, digits, '-', '_' or '.'"
        )
    try:
        phase = Phase(values["phase"])
    except ValueError:
        raise PolicyLoadError(
            source, _line(fields["phase"][1]),
            f"unknown phase {values['phase']!r} (phases: {', '.join(p.value for p in Phase)})",
        ) from None  # fmt: skip
    try:
        effect = Effect(values["effect"])
    except ValueError:
        raise PolicyLoadError(
            source, _line(fields["effect"][1]),
            f"unknown effect {values['effect']!r} (effects: {', '.join(e.value for e in Effect)})",
        ) from None  # fmt: skip
    if effect not in ALLOWED_EFFECTS[phase]:
        raise PolicyLoadError(
            source, _line(fields["effect"][1]),
            f"effect {effect.value!r} cannot be used in phase {phase.value!r} (allowed: "
            f"{', '.join(sorted(e.value for e in ALLOWED_EFFECTS[phase]))})",
        )  # fmt: skip
    match = Match()
    if "match" in fields:
        match = _match(fields["match"][1], source)
    params: dict[str, Any] = {}
    if "params" in fields:
        _mapping(fields["params"][1], source, "params")
        params = _value(fields["params"][1]) or {}
    policy = Policy(
        id=values["id"],
        version=values["version"],
        description=values["description"],
        phase=phase,
        when=values["when"],
        effect=effect,
        message=values["message"],
        match=match,
        params=params,
        source=source,
        line=_line(node),
    )
    return _with_hash(policy)


def _with_hash(policy: Policy) -> Policy:
    return Policy(**{**policy.__dict__, "hash": content_hash(policy.canonical())})


def _match(node: yaml.Node, source: str) -> Match:
    fields = _mapping(node, source, "match")
    lists: dict[str, tuple[str, ...]] = {}
    for name, (key, value) in fields.items():
        if name not in _MATCH_FIELDS:
            raise PolicyLoadError(
                source,
                _line(key),
                f"unknown match field {name!r} (fields: projects, models, roles)",
            )
        if not isinstance(value, yaml.SequenceNode) or not all(
            isinstance(item, yaml.ScalarNode) for item in value.value
        ):
            raise PolicyLoadError(source, _line(value), f"match.{name} must be a list of names")
        lists[name] = tuple(str(item.value) for item in value.value)
    return Match(**lists)


EXAMPLE = """
id: planner-confidence-floor
version: "1"
description: The planner must be confident enough to act without a person.
phase: post_decision
params: {min_confidence: 0.6}
when: decision.confidence < params.min_confidence
effect: require_review
message: "confidence {{ decision.confidence }} is below {{ params.min_confidence }}"
"""
