"""The experiments this process assigns requests to: held beside the policy gates, replaced
whole when the service's bundle changes (or given to `collectors.init(experiments=...)`),
and consulted once per request when it opens.

The hashing itself is `collectors.experiments` (pure, shared with the service's gateway);
this module keeps what a request needs ready: the parsed configurations and the root-span
attribute names of their stages, so opening a request costs one hash per running experiment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from collectors import conventions as wire
from collectors.experiments import Assignment, ExperimentConfig

_Prepared = tuple[tuple[ExperimentConfig, str, str], ...]


def parse(entries: Iterable[Mapping[str, Any]]) -> tuple[ExperimentConfig, ...]:
    """Bundle entries as configurations; raises ValueError naming a malformed entry.

    >>> parse([{"name": "wm", "stage": "world_model", "salt": "s",
    ...         "arms": [{"name": "a", "model": "models:/m/1"}]}])[0].stage
    'world_model'
    """
    configs = []
    for i, entry in enumerate(entries):
        try:
            configs.append(ExperimentConfig.from_bundle(entry))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"experiment entry {i} is malformed ({exc!r})") from exc
    return tuple(configs)


class Experiments:
    """The running experiments, swapped as one tuple so a request reads a consistent set."""

    __slots__ = ("_prepared",)

    def __init__(self, configs: Iterable[ExperimentConfig] = ()) -> None:
        self._prepared: _Prepared = ()
        self.replace(configs)

    @property
    def configs(self) -> tuple[ExperimentConfig, ...]:
        return tuple(config for config, _, _ in self._prepared)

    def replace(self, configs: Iterable[ExperimentConfig]) -> None:
        """Make `configs` the running set (from the next request on)."""
        self._prepared = tuple(
            (c, wire.experiment_name(c.stage), wire.experiment_arm(c.stage)) for c in configs
        )

    def assign(
        self, subject: str | None, request_id: str, attributes: dict[str, Any]
    ) -> dict[str, Assignment] | None:
        """Each running experiment's assignment of this request, by stage, written into the
        root span's `attributes` too; None when no experiment runs."""
        prepared = self._prepared
        if not prepared:
            return None
        found: dict[str, Assignment] = {}
        for config, name_key, arm_key in prepared:
            assignment = config.assign(subject, request_id)
            found[config.stage] = assignment
            attributes[name_key] = config.name
            attributes[arm_key] = assignment.arm
        return found
