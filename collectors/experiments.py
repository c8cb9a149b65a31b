"""Experiment assignment: which arm serves a unit, and which shadow arms run for it.

The same pure functions decide in the SDK (in the inference process) and in the service's
gateway, from the same configuration, so a unit gets the same arm wherever it is asked and no
request ever waits on the network for it. The unit is hashed with the experiment's salt, so
two experiments split the same units independently, and a sticky unit (the subject) keeps its
arm for as long as the arms and weights stay the same.

>>> from collectors.experiments import assign
>>> arms = [("control", 1.0), ("challenger", 1.0)]
>>> assign("salt-1", "user-17", arms) == assign("salt-1", "user-17", arms)
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_SCALE = float(2**64)
# Shadow arms up to which every (arm, sampled shadows) answer is built once, not per request.
_PREBUILT_SHADOWS = 4


def unit_position(salt: str, unit: str) -> float:
    """Where `unit` falls in [0, 1) for an experiment salted `salt`.

    >>> 0.0 <= unit_position("salt-1", "user-17") < 1.0
    True
    """
    digest = hashlib.blake2b(f"{salt}:{unit}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def assign(salt: str, unit: str, arms: Sequence[tuple[str, float]]) -> str:
    """The arm (name) whose share of the cumulative weights holds the unit's position.

    >>> assign("s", "u", [("only", 1.0)])
    'only'
    """
    if not arms:
        raise ValueError("an experiment needs at least one arm")
    total = sum(weight for _, weight in arms)
    if total <= 0:
        raise ValueError("arm weights must add up to more than zero")
    point = unit_position(salt, unit) * total
    cumulative = 0.0
    for name, weight in arms:
        cumulative += weight
        if point < cumulative:
            return name
    return arms[-1][0]  # float rounding at the very top of the range


def sampled(salt: str, unit: str, shadow: str, rate: float) -> bool:
    """Whether the shadow arm `shadow` runs for this unit (a `rate` share of units).

    >>> sampled("s", "u", "candidate", 1.0), sampled("s", "u", "candidate", 0.0)
    (True, False)
    """
    return unit_position(salt, f"shadow:{shadow}:{unit}") < rate


@dataclass(frozen=True, slots=True)
class ShadowArm:
    """A shadow arm sampled for one request: its answer is stored, never returned."""

    experiment: str
    name: str
    model: str


@dataclass(frozen=True, slots=True)
class Assignment:
    """The arm of one experiment that serves a request's stage, and its sampled shadows."""

    experiment: str
    stage: str
    arm: str
    model: str
    shadows: tuple[ShadowArm, ...] = ()


@dataclass(frozen=True, slots=True)
class ExperimentConfig:
    """One running experiment as the bundle carries it (`GET /v1/policies/bundle`,
    key `experiments`)."""

    name: str
    stage: str
    unit: str
    salt: str
    arms: tuple[tuple[str, str, float], ...]  # (name, model, weight)
    shadows: tuple[tuple[str, str, float], ...] = ()  # (name, model, sample_rate)
    _weights: tuple[tuple[str, float], ...] = field(default=(), repr=False, compare=False)
    # Made once in __post_init__ so that assigning a request is two hashes and a lookup:
    # the hash prefix, the cumulative weights, each shadow's hash prefix and rate, and the
    # answers themselves by (arm, bit mask of the sampled shadows).
    _prefix: bytes = field(default=b"", init=False, repr=False, compare=False)
    _total: float = field(default=0.0, init=False, repr=False, compare=False)
    _bounds: tuple[tuple[float, str], ...] = field(
        default=(), init=False, repr=False, compare=False
    )
    _shadow_prefixes: tuple[tuple[bytes, float], ...] = field(
        default=(), init=False, repr=False, compare=False
    )
    _answers: dict[tuple[str, int], Assignment] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self.arms:
            raise ValueError(f"experiment {self.name!r} needs at least one arm")
        weights = tuple((name, weight) for name, _, weight in self.arms)
        total = sum(weight for _, weight in weights)
        if not total > 0:
            raise ValueError(f"experiment {self.name!r}: arm weights must add up to more than 0")
        # The same running sum as `assign`, so the bounds are the same floats.
        bounds, cumulative = [], 0.0
        for name, weight in weights:
            cumulative += weight
            bounds.append((cumulative, name))
        prefixes = tuple(
            (f"{self.salt}:shadow:{name}:".encode(), rate) for name, _, rate in self.shadows
        )
        answers: dict[tuple[str, int], Assignment] = {}
        if len(self.shadows) <= _PREBUILT_SHADOWS:
            for arm, model, _ in self.arms:
                for mask in range(1 << len(self.shadows)):
                    answers[(arm, mask)] = self._answer(arm, model, mask)
        set_ = object.__setattr__
        set_(self, "_weights", weights)
        set_(self, "_prefix", f"{self.salt}:".encode())
        set_(self, "_total", total)
        set_(self, "_bounds", tuple(bounds))
        set_(self, "_shadow_prefixes", prefixes)
        set_(self, "_answers", answers)

    def _answer(self, arm: str, model: str, mask: int) -> Assignment:
        shadows = tuple(
            ShadowArm(self.name, name, shadow_model)
            for i, (name, shadow_model, _) in enumerate(self.shadows)
            if mask >> i & 1
        )
        return Assignment(self.name, self.stage, arm, model, shadows)

    @classmethod
    def from_bundle(cls, entry: Mapping[str, Any]) -> ExperimentConfig:
        arms = tuple(
            (str(a["name"]), str(a["model"]), float(a.get("weight", 1.0))) for a in entry["arms"]
        )
        shadows = tuple(
            (str(s["name"]), str(s["model"]), float(s.get("sample_rate", 1.0)))
            for s in entry.get("shadows") or ()
        )
        return cls(
            name=str(entry["name"]),
            stage=str(entry["stage"]),
            unit=str(entry.get("unit", "subject")),
            salt=str(entry["salt"]),
            arms=arms,
            shadows=shadows,
        )

    def unit_of(self, subject: str | None, request_id: str) -> str:
        """The subject for a sticky experiment (when the request has one), else the request."""
        return subject if self.unit == "subject" and subject else request_id

    def assign(self, subject: str | None, request_id: str) -> Assignment:
        """The arm and the sampled shadow arms for one request.

        >>> config = ExperimentConfig.from_bundle({"name": "wm", "stage": "world_model",
        ...     "unit": "subject", "salt": "s", "arms": [{"name": "a", "model": "models:/m/1"}]})
        >>> config.assign("user-1", "req-1").arm
        'a'
        """
        # `assign` and `sampled`, with what does not depend on the unit computed beforehand.
        unit = (subject if self.unit == "subject" and subject else request_id).encode()
        digest = hashlib.blake2b(self._prefix + unit, digest_size=8).digest()
        point = int.from_bytes(digest, "big") / _SCALE * self._total
        arm = self._bounds[-1][1]  # float rounding at the very top of the range
        for bound, name in self._bounds:
            if point < bound:
                arm = name
                break
        mask = 0
        for i, (prefix, rate) in enumerate(self._shadow_prefixes):
            shadow = hashlib.blake2b(prefix + unit, digest_size=8).digest()
            if int.from_bytes(shadow, "big") / _SCALE < rate:
                mask |= 1 << i
        answer = self._answers.get((arm, mask))
        if answer is None:
            model = next(m for name, m, _ in self.arms if name == arm)
            answer = self._answer(arm, model, mask)
        return answer
