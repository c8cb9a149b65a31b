"""Running the registered detectors over one plan: each window read from the store once, each
detector fitted on the first reference it accepts that is available, then tested on the
current window.

References on offer (see `app.drift.reference`):

- the traffic reference, a window of the version's own traffic (by default the requests just
  before the current window; see `app.drift.plan`), with every part a detector reads; kept
  between runs while its bounds and the count of requests in it hold;
- the training dataset of the version's MLflow lineage, input features only, read when a
  detector asks for it (only the columns the current window records).

A reference is kept between runs with the detectors fitted on it (per kind and options), and
dropped with them, so a scheduled job neither reads again nor fits again what is costly (the
reference window, the latent test's random features) every run. A kind without the data it
needs (no reference, no features recorded, too few requests) is skipped with the reason,
never reported as "none".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy import Engine

from app.drift import reference as references
from app.drift import windows
from app.drift.detectors.protocol import (
    TRAFFIC,
    TRAINING,
    Detector,
    DetectorFactory,
    Options,
    Skipped,
    Source,
)
from app.drift.detectors.sample import Sample
from app.drift.plan import Plan
from app.drift.results import Clock, KindReport, VersionResult
from app.drift.settings import DriftSettings
from app.drift.windows import Bounds, Window
from collectors import conventions as wire

log = logging.getLogger("warden.drift")


@dataclass(frozen=True)
class Reference:
    """A reference a detector can be fitted on."""

    sample: Sample
    description: dict[str, Any]
    """What a report says it was compared with: {"source": ..., "rows": ..., ...}."""


@dataclass(frozen=True)
class Unavailable:
    reason: str
    failed: bool = False
    """Unreadable rather than absent: said in the log when another reference serves."""


@dataclass
class _Kept:
    """A reference as read from its source, and the detectors fitted on it (by kind, class
    and options): kept and dropped together."""

    reference: Reference
    window: Window | None = None
    fitted: dict[tuple[Any, ...], Detector] = field(default_factory=dict)
    read: int = 0
    """Requests in the bounds when it was read (the window may hold a sample of them)."""


class Detection:
    """Judges plans with `detectors` (kind -> detector class); keeps between runs what costs
    to read or fit again."""

    def __init__(
        self,
        engine: Engine,
        data_dir: Path,
        detectors: Mapping[str, DetectorFactory],
        artifacts: bool = True,
    ) -> None:
        self.engine = engine
        self.detectors = dict(detectors)
        self.artifacts = artifacts
        self.datasets = references.DatasetCache(data_dir / "cache" / "datasets")
        # The pinned reference windows (tens of MB each at 100,000 requests) and the training
        # datasets' columns, each with the detectors fitted on it.
        self.traffic_references = references.Built(keep=4)
        self.training_references = references.Built(keep=4)

    def judge(
        self,
        project_id: int,
        plan: Plan,
        config: DriftSettings,
        seed: int,
        result: VersionResult,
        clock: Clock,
    ) -> None:
        """Add a report (or the reason it was skipped) per kind to `result`."""
        if plan.current is None:
            result.skipped = {k: "no traffic after the reference window" for k in self.detectors}
            return
        current = windows.load(
            self.engine, project_id, plan.model_name, plan.model_version, plan.current
        )
        if current.requests < config.min_requests:
            result.skipped = {
                k: f"{current.requests} requests in the current window, fewer than "
                f"min_requests={config.min_requests}"
                for k in self.detectors
            }
            return
        offers: dict[Source, _Kept | Unavailable] = {
            TRAFFIC: self._traffic_for(project_id, plan, config)
        }

        def offered(source: Source) -> _Kept | Unavailable:
            # The traffic reference is read with the current window; others on first demand.
            if source not in offers:
                offers[source] = (
                    self._training_for(project_id, plan, current)
                    if source == TRAINING
                    else Unavailable(f"no reference called {source!r}")
                )
            return offers[source]

        clock.lap("load")
        options = Options(
            min_requests=config.min_requests,
            permutations=config.permutations,
            seed=seed,
            artifacts=self.artifacts,
        )
        sample = current.sample()
        for kind, make in self.detectors.items():
            try:
                detector, reference = self._fit(kind, make, options, offered)
                found = detector.test(sample)
            except Skipped as skip:
                result.skipped[kind] = str(skip)
            else:
                result.reports.append(
                    KindReport(
                        kind, found.verdict, found.share_drifted, found.scores,
                        reference.description, current.bounds, current.requests,
                    )
                )  # fmt: skip
                result.artifacts.update(
                    {f"drift/{name}": text for name, text in found.artifacts.items()}
                )
            clock.lap(kind)

    def _fit(
        self,
        kind: str,
        make: DetectorFactory,
        options: Options,
        offered: Callable[[Source], _Kept | Unavailable],
    ) -> tuple[Detector, Reference]:
        """The detector fitted on the first reference it accepts that is available."""
        detector = make(options)
        missing: list[Unavailable] = []
        for source in detector.references:
            found = offered(source)
            if isinstance(found, Unavailable):
                missing.append(found)
                continue
            for earlier in missing:
                if earlier.failed:
                    log.warning("%s; the %s reference serves instead", earlier.reason, source)
            key = (kind, make, options)
            fitted = found.fitted.get(key)
            if fitted is None:
                fitted = found.fitted[key] = detector.fit(found.reference.sample)
            return fitted, found.reference
        raise Skipped("; ".join(m.reason for m in missing) or "it accepts no reference")

    def reference_window(
        self, project_id: int, name: str, version: str, bounds: Bounds, rows: int | None = None
    ) -> Window:
        """The traffic reference's window (see `_traffic`)."""
        window = self._traffic(project_id, name, version, bounds, rows).window
        assert window is not None
        return window

    def _traffic(
        self, project_id: int, name: str, version: str, bounds: Bounds, rows: int | None
    ) -> _Kept:
        """The traffic reference, read once: kept and used again while the count of requests
        in its bounds is unchanged (a late request or retention changes the count, and the
        window is read anew). With `rows`, it is that many of them, evenly spaced in time
        order (all of them when there are no more)."""
        key = (*references.reference_key(project_id, name, version, bounds), rows)
        count = windows.count_in(self.engine, project_id, name, version, bounds)
        kept = cast(_Kept | None, self.traffic_references.get(key))
        if kept is not None and kept.window is not None and kept.read == count:
            return kept
        window = windows.load(self.engine, project_id, name, version, bounds)
        read = window.requests
        description: dict[str, Any] = {
            "source": TRAFFIC,
            "start_unix_nano": bounds.start,
            "end_unix_nano": bounds.end,
        }
        if rows is not None and read > rows:
            window = window.subset(evenly_spaced(read, rows))
            description["sampled_from"] = read
        description["rows"] = window.requests
        kept = _Kept(Reference(window.sample(), description), window, read=read)
        self.traffic_references.put(key, kept)
        return kept

    def _traffic_for(
        self, project_id: int, plan: Plan, config: DriftSettings
    ) -> _Kept | Unavailable:
        kept = (
            None
            if plan.reference is None
            else self._traffic(
                project_id, plan.model_name, plan.model_version, plan.reference, plan.reference_rows
            )
        )
        if kept is None or kept.window is None or kept.window.requests < config.min_requests:
            return Unavailable(
                f"the version has fewer than reference_count={config.reference_count} "
                "requests before the current window: no traffic reference yet"
            )
        return kept

    def _training_for(self, project_id: int, plan: Plan, current: Window) -> _Kept | Unavailable:
        """The training dataset's columns that the current window records (those it has),
        read through its source once."""
        columns = sorted(current.features.columns)
        if not columns:
            return Unavailable(f"no input features recorded ({wire.INPUT_FEATURES})")
        name, version = plan.model_name, plan.model_version
        dataset = references.training_dataset(self.engine, project_id, name, version)
        if not dataset:
            return Unavailable("no training dataset in the lineage")
        key = (dataset.get("digest"), dataset.get("name"), tuple(columns))
        kept = cast(_Kept | None, self.training_references.get(key))
        if kept is not None:
            return kept
        try:
            frame = self.datasets.load(dataset, columns)
        except references.ReferenceUnavailable as exc:
            return Unavailable(str(exc), failed=True)
        description = {
            "source": TRAINING,
            "name": dataset.get("name"),
            "digest": dataset.get("digest"),
            "rows": len(frame),
        }
        kept = _Kept(Reference(Sample(frame), description))
        self.training_references.put(key, kept)
        return kept


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """`k` of the indices `0..n-1`, evenly spaced from the first, in order (`k <= n`).

    >>> evenly_spaced(10, 4).tolist()
    [0, 2, 5, 7]
    """
    return (np.arange(k) * n) // k
