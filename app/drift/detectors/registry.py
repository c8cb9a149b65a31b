"""The drift kinds a job judges and the detector of each: the one place a kind is added.

A kind is registered by its name and by where its detector lives (`module:Class`), so that
naming the kinds (the reports' filters, the dashboard) does not import the detectors, which
bring pandas, scipy, torch and Evidently. A fourth kind is one module under
`app.drift.detectors` keeping the `Detector` protocol, and one line here; the job judges
every kind in this order.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from app.drift.detectors.protocol import DetectorFactory

DETECTORS: Mapping[str, str] = MappingProxyType({
    "input": "app.drift.detectors.inputs:InputDetector",
    "latent": "app.drift.detectors.latent:LatentDetector",
    "decision": "app.drift.detectors.decisions:DecisionDetector",
})  # fmt: skip
KINDS: tuple[str, ...] = tuple(DETECTORS)


def load(where: str) -> DetectorFactory:
    """The detector class at `where` (`module:Class`), imported now."""
    module, _, name = where.partition(":")
    return cast("DetectorFactory", getattr(importlib.import_module(module), name))


def registered() -> dict[str, DetectorFactory]:
    """Every registered kind's detector class, imported now, in the registry's order."""
    return {kind: load(where) for kind, where in DETECTORS.items()}
