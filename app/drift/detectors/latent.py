"""Latent-state drift of one world-model layer: are the current projection vectors drawn from
the distribution of the reference ones?

The test is the kernel two-sample test (MMD, Gretton et al. 2012) with a Gaussian kernel made
linear in the window by random Fourier features (Rahimi and Recht 2007):
`z(x) = sqrt(2/D) cos(xW + b)` with `W ~ N(0, 1/sigma²)` and `b ~ U[0, 2π)`, so that
`k(x, y) ≈ z(x)·z(y)` and `MMD² ≈ ||mean z(X) - mean z(Y)||²`. The p-value comes from
permutations of the pooled rows, all drawn at once as a (permutations x N) weight matrix
multiplied by the (N x D) feature matrix: the cost is O(P·N·D), linear in the window.

sigma is the median heuristic (the median pairwise distance of at most 1,000 rows) on the
reference alone, so that a `LatentReference` built once fixes the kernel and successive
windows tested against it get comparable MMD values.

Verdicts. The permutation p-value `(1 + #{permutations ≥ observed}) / (1 + P)` is exact: under
no shift `P(p ≤ a) ≤ a`. The defaults (`drift_p=0.01`, `warn_p=0.05`) therefore say "drift" on
at most 1% and "warn" or "drift" on at most 5% of unchanged windows. The smallest attainable
p is `1/(P+1)`: 0.0099 with the default 100 permutations, reached when the observed MMD beats
every permutation. With fewer than 99 permutations `drift_p` could never be reached, so the
drift threshold used is `max(drift_p, 1/(P+1))` ("beat every permutation"), which stays under
`warn_p` down to 19 permutations; fewer are refused. The thresholds used are in the result.

Windows with fewer than `MIN_SAMPLES` rows raise ValueError rather than answer "none": too few
rows is no evidence that nothing moved, and a caller should not store it as such.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> before = rng.normal(size=(500, 16)).astype("float32")
    >>> after = before + np.r_[1.0, np.zeros(15)].astype("float32")
    >>> result = latent_drift(before, after)
    >>> result.verdict, result.moved_dimensions
    ('drift', (0,))
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import torch

from app.drift.detectors.protocol import (
    TRAFFIC,
    DriftResult,
    Options,
    Skipped,
    Source,
    Verdict,
    holm,
    verdict_for,
    worst,
)
from app.drift.detectors.sample import Sample

Vectors = npt.NDArray[Any] | torch.Tensor

MIN_SAMPLES = 20
# The thresholds of a layer's p-value (Holm-adjusted over the layers, in `LatentDetector`).
DRIFT_P, WARN_P = 0.01, 0.05
DEFAULT_FEATURES = 256
MAX_REFERENCE_ROWS = 20_000
BANDWIDTH_ROWS = 1_000
# The KS statistics per coordinate sort both windows; past this many rows per side a random
# subsample of them locates a shift as well (the statistic's noise is about 0.01 there).
KS_ROWS = 20_000
# One block of permutation weights holds at most this many float32 values (32 MB).
_BLOCK_VALUES = 8_000_000
# Random streams drawn from one seed: which reference rows are kept, which rows set the
# bandwidth, the Fourier features, the permutations, and which rows the KS statistics see.
_KEEP, _BANDWIDTH, _FEATURES, _PERMUTE, _KS = range(5)


@dataclass(frozen=True)
class DimensionShift:
    """How one coordinate of the projection moved, for pointing at where drift happened."""

    dimension: int
    mean_shift: float
    """(current mean - reference mean) / reference standard deviation."""
    std_ratio: float
    """current standard deviation / reference standard deviation."""
    ks: float
    """Two-sample Kolmogorov-Smirnov statistic, the largest gap between the two ECDFs, in
    [0, 1]; on a random `KS_ROWS` rows of a side that has more."""

    def to_json(self) -> dict[str, Any]:
        return {
            "dimension": self.dimension,
            "mean_shift": self.mean_shift,
            "std_ratio": self.std_ratio,
            "ks": self.ks,
        }


@dataclass(frozen=True)
class LatentDrift:
    mmd2: float
    """Squared MMD between the windows in the random-feature space."""
    p_value: float
    bandwidth: float
    n_reference: int
    """Reference rows the test used (the reference is subsampled to `max_rows`)."""
    n_current: int
    permutations: int
    features: int
    warn_p: float
    drift_p: float
    """The drift threshold used: the one asked for, or 1/(permutations + 1) if that is larger."""
    per_dimension: tuple[DimensionShift, ...]
    moved_dimensions: tuple[int, ...]
    """Coordinates whose KS statistic passes a Bonferroni-corrected KS test at `warn_p`, most
    moved first; empty when the verdict is "none"."""
    verdict: Verdict

    def to_json(self) -> dict[str, Any]:
        return {
            "mmd2": self.mmd2,
            "p_value": self.p_value,
            "bandwidth": self.bandwidth,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "permutations": self.permutations,
            "features": self.features,
            "warn_p": self.warn_p,
            "drift_p": self.drift_p,
            "per_dimension": [shift.to_json() for shift in self.per_dimension],
            "moved_dimensions": list(self.moved_dimensions),
            "verdict": self.verdict,
        }


@dataclass(frozen=True, eq=False)
class LatentReference:
    """The reference side of the test, built once and reused for every window.

    Holds the kept reference rows, the kernel (bandwidth, frequencies, phases) and the rows'
    random Fourier features, so a run only featurises the current window.
    """

    sample: torch.Tensor
    """(n, d) float32 reference rows kept (at most `max_rows`, drawn at random)."""
    features: torch.Tensor
    """(n, D) float32 random Fourier features of `sample`."""
    weights: torch.Tensor
    """(d, D) frequencies, N(0, 1/bandwidth²)."""
    offsets: torch.Tensor
    """(D,) phases, U[0, 2π)."""
    bandwidth: float
    rows_seen: int
    """Reference rows given, before subsampling."""

    @classmethod
    def build(
        cls,
        reference: Vectors,
        *,
        features: int = DEFAULT_FEATURES,
        seed: int = 0,
        max_rows: int | None = MAX_REFERENCE_ROWS,
    ) -> LatentReference:
        """Fix the kernel on `reference` (an (n, d) array) and featurise it.

        >>> import numpy as np
        >>> ref = LatentReference.build(np.zeros((100, 4)) + np.arange(100)[:, None], features=64)
        >>> ref.features.shape
        torch.Size([100, 64])
        """
        if features < 1:
            raise ValueError(f"features must be at least 1, got {features}")
        if max_rows is not None and max_rows < MIN_SAMPLES:
            raise ValueError(f"max_rows must be at least {MIN_SAMPLES}, got {max_rows}")
        rows = _as_rows(reference, "reference")
        rows_seen = len(rows)
        if max_rows is not None and rows_seen > max_rows:
            rows = rows[torch.randperm(rows_seen, generator=_stream(seed, _KEEP))[:max_rows]]
        bandwidth = _median_distance(rows, _stream(seed, _BANDWIDTH))
        generator = _stream(seed, _FEATURES)
        weights = torch.randn(rows.shape[1], features, generator=generator) / bandwidth
        offsets = torch.rand(features, generator=generator) * (2 * math.pi)
        return cls(
            sample=rows,
            features=_fourier(rows, weights, offsets),
            weights=weights,
            offsets=offsets,
            bandwidth=bandwidth,
            rows_seen=rows_seen,
        )

    @property
    def dimensions(self) -> int:
        return int(self.sample.shape[1])

    def featurise(self, rows: torch.Tensor) -> torch.Tensor:
        return _fourier(rows, self.weights, self.offsets)


def latent_drift(
    reference: LatentReference | Vectors,
    current: Vectors,
    *,
    permutations: int = 100,
    features: int | None = None,
    seed: int = 0,
    warn_p: float = WARN_P,
    drift_p: float = DRIFT_P,
) -> LatentDrift:
    """Test whether `current` ((m, d) projection vectors) drifted from `reference`.

    `reference` is either the raw (n, d) array, or a `LatentReference` built from it once
    (`features` then defaults to the reference's and must match it if given). With the same
    `seed`, both give the same answer. See the module docstring for the test and verdicts.

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> built = LatentReference.build(rng.normal(size=(2000, 16)))
    >>> latent_drift(built, rng.normal(size=(300, 16))).verdict
    'none'
    >>> latent_drift(built, rng.normal(scale=1.5, size=(300, 16))).verdict
    'drift'
    """
    if permutations < 1:
        raise ValueError(f"permutations must be at least 1, got {permutations}")
    if not 0 < drift_p <= warn_p < 1:
        raise ValueError(f"need 0 < drift_p <= warn_p < 1, got {drift_p=} and {warn_p=}")
    smallest_p = 1 / (permutations + 1)
    if smallest_p > warn_p:
        needed = math.ceil(1 / warn_p) - 1
        raise ValueError(
            f"with {permutations} permutations the smallest p-value is 1/{permutations + 1}, "
            f"above warn_p={warn_p}, so no shift could ever be reported: use at least "
            f"{needed} permutations"
        )
    drift_p = max(drift_p, smallest_p)
    if isinstance(reference, LatentReference):
        built = reference.features.shape[1]
        if features is not None and features != built:
            raise ValueError(
                f"the reference was built with {built} features, not {features}: rebuild it "
                "or leave features unset"
            )
        ref = reference
    else:
        ref = LatentReference.build(reference, features=features or DEFAULT_FEATURES, seed=seed)
    cur = _as_rows(current, "current")
    if cur.shape[1] != ref.dimensions:
        raise ValueError(
            f"current has {cur.shape[1]} dimensions but the reference has {ref.dimensions}: "
            "compare projections of the same layer and projection"
        )

    z_ref, z_cur = ref.features, ref.featurise(cur)
    observed = _mmd2(_observed_weights(len(z_ref), len(z_cur)), z_ref, z_cur)[0]
    permuted = _permuted_mmd2(z_ref, z_cur, permutations, _stream(seed, _PERMUTE))
    # A relative and an absolute slack, so that float32 rounding cannot make identical
    # windows look significant.
    slack = 1e-6 * float(observed) + 1e-12
    exceed = int((permuted >= observed - slack).sum())
    p_value = (1 + exceed) / (1 + permutations)
    verdict = verdict_for(p_value, warn_p, drift_p)

    ks_ref, ks_cur = (_at_most(rows, KS_ROWS, _stream(seed, _KS)) for rows in (ref.sample, cur))
    ks = _ks_statistics(ks_ref, ks_cur)
    shifts = _dimension_shifts(ref.sample, cur, ks)
    moved: tuple[int, ...] = ()
    if verdict != "none":
        critical = _ks_critical(warn_p / ref.dimensions, len(ks_ref), len(ks_cur))
        order = torch.argsort(ks, descending=True).tolist()
        moved = tuple(int(i) for i in order if float(ks[i]) > critical)
    return LatentDrift(
        mmd2=float(observed),
        p_value=p_value,
        bandwidth=ref.bandwidth,
        n_reference=len(ref.sample),
        n_current=len(cur),
        permutations=permutations,
        features=int(z_ref.shape[1]),
        warn_p=warn_p,
        drift_p=drift_p,
        per_dimension=shifts,
        moved_dimensions=moved,
        verdict=verdict,
    )


class LatentDetector:
    """Latent-state drift as a `Detector`, layer by layer: each layer of the traffic reference
    (the training data holds no states) with enough rows is built once into a
    `LatentReference` when fitted, and each layer both sides hold is tested with
    `latent_drift`.

    Each layer's verdict is taken on its p-value Holm-adjusted over the layers tested, so the
    kind says "warn" on at most 5% (and "drift" on at most 1%) of unchanged windows however
    many layers are watched; the verdict is the worst layer's; `share_drifted` the share of
    tested layers at "drift".
    """

    references: tuple[Source, ...] = (TRAFFIC,)

    def __init__(self, options: Options = Options()) -> None:
        self.options = options
        self._layers: frozenset[str] | None = None
        self._built: dict[str, LatentReference] = {}

    def fit(self, reference: Sample) -> Self:
        enough = self.options.min_requests
        self._layers = frozenset(reference.latent)
        self._built = {
            layer: LatentReference.build(vectors, seed=self.options.seed)
            for layer, vectors in sorted(reference.latent.items())
            if len(vectors) >= enough
        }
        return self

    def test(self, current: Sample) -> DriftResult:
        if self._layers is None:
            raise RuntimeError("fit the detector on a reference first")
        layers = sorted(self._layers.intersection(current.latent))
        if not layers:
            raise Skipped("no world-model latent states recorded in both windows")
        per_layer = _per_layer(self._built, current.latent, layers, self.options)
        if not per_layer:
            raise Skipped("too few latent states per layer in one of the windows")
        verdicts = [v["verdict"] for v in per_layer.values()]
        share = sum(v == "drift" for v in verdicts) / len(verdicts)
        return DriftResult(worst(verdicts), share, {"layers": per_layer, "share_drifted": share})


def _per_layer(
    built: Mapping[str, LatentReference],
    current: Mapping[str, npt.NDArray[Any]],
    layers: list[str],
    options: Options,
) -> dict[str, Any]:
    """`latent_drift` of each of `layers` that has enough rows on both sides, as JSON, each
    layer's verdict taken on its Holm-adjusted p-value (`p_adjusted`) over the layers tested.

    The permutations are raised so that "drift" stays reachable after the adjustment: with
    `k` layers the smallest adjusted p-value is `k / (permutations + 1)`."""
    tested = [
        layer for layer in layers if layer in built and len(current[layer]) >= options.min_requests
    ]
    permutations = max(options.permutations, math.ceil(len(tested) / DRIFT_P - 1e-9) - 1)
    found = {
        layer: latent_drift(
            built[layer], current[layer], permutations=permutations, seed=options.seed,
            drift_p=DRIFT_P, warn_p=WARN_P,
        )
        for layer in tested
    }  # fmt: skip
    adjusted = holm([result.p_value for result in found.values()])
    out = {}
    for (layer, result), p_adjusted in zip(found.items(), adjusted, strict=True):
        verdict = verdict_for(p_adjusted, result.warn_p, result.drift_p)
        moved = result.moved_dimensions if verdict != "none" else ()
        out[layer] = result.to_json() | {
            "p_adjusted": p_adjusted,
            "correction": "holm",
            "verdict": verdict,
            "moved_dimensions": list(moved),
        }
    return out


def _stream(seed: int, stream: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, stream]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def _as_rows(values: Vectors, name: str) -> torch.Tensor:
    rows = torch.as_tensor(values).detach().to(device="cpu", dtype=torch.float32)
    if rows.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (rows, dimensions), got shape {tuple(rows.shape)}"
        )
    if rows.shape[0] < MIN_SAMPLES:
        raise ValueError(
            f"{name} has {rows.shape[0]} rows; latent drift needs at least {MIN_SAMPLES} "
            "per side: widen the window or wait for more traffic"
        )
    if not bool(torch.isfinite(rows).all()):
        raise ValueError(f"{name} holds NaN or infinite values: drop or impute those rows first")
    return rows.contiguous()


def _median_distance(rows: torch.Tensor, generator: torch.Generator) -> float:
    if len(rows) > BANDWIDTH_ROWS:
        rows = rows[torch.randperm(len(rows), generator=generator)[:BANDWIDTH_ROWS]]
    distances = torch.pdist(rows.double())
    positive = distances[distances > 0]
    if positive.numel() == 0:
        return 1.0  # every row is the same point: any bandwidth will do
    median = float(distances.median())
    return median if median > 0 else float(positive.median())


def _fourier(rows: torch.Tensor, weights: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    scale = math.sqrt(2.0 / weights.shape[1])
    return torch.cos(torch.addmm(offsets, rows, weights)).mul_(scale)


def _observed_weights(n: int, m: int) -> torch.Tensor:
    weights = torch.full((1, n + m), -1.0 / m)
    weights[0, :n] = 1.0 / n
    return weights


def _mmd2(weights: torch.Tensor, z_ref: torch.Tensor, z_cur: torch.Tensor) -> torch.Tensor:
    """||Σ w_i z_i||² for each row of `weights`: the weights are +1/n on the rows labelled
    reference and -1/m on the others, so each row gives mean z(X) - mean z(Y)."""
    n = len(z_ref)
    difference = weights[:, :n] @ z_ref + weights[:, n:] @ z_cur
    return difference.double().square().sum(dim=1)


def _permuted_mmd2(
    z_ref: torch.Tensor, z_cur: torch.Tensor, permutations: int, generator: torch.Generator
) -> torch.Tensor:
    n, m = len(z_ref), len(z_cur)
    total = n + m
    block = max(1, min(permutations, _BLOCK_VALUES // total))
    results = []
    for start in range(0, permutations, block):
        rows = min(block, permutations - start)
        weights = torch.full((rows, total), -1.0 / m)
        for row in range(rows):
            weights[row, torch.randperm(total, generator=generator)[:n]] = 1.0 / n
        results.append(_mmd2(weights, z_ref, z_cur))
    return torch.cat(results)


def _at_most(rows: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    if len(rows) <= count:
        return rows
    return rows[torch.randperm(len(rows), generator=generator)[:count]]


def _dimension_shifts(
    ref: torch.Tensor, cur: torch.Tensor, ks: torch.Tensor
) -> tuple[DimensionShift, ...]:
    ref64, cur64 = ref.double(), cur.double()
    ref_std, cur_std = ref64.std(dim=0), cur64.std(dim=0)
    scale = ref_std.clamp_min(1e-12)
    mean_shift = (cur64.mean(dim=0) - ref64.mean(dim=0)) / scale
    std_ratio = torch.where((ref_std == 0) & (cur_std == 0), 1.0, cur_std / scale)
    return tuple(
        DimensionShift(
            dimension=i,
            mean_shift=float(mean_shift[i]),
            std_ratio=float(std_ratio[i]),
            ks=float(ks[i]),
        )
        for i in range(ref.shape[1])
    )


def _ks_statistics(ref: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
    """Two-sample KS statistic of every column at once: sort each pooled column, walk up the
    ECDF gap (+1/n for a reference value, -1/m for a current one), read it after each run
    of tied values, and take the largest absolute gap."""
    n, m = len(ref), len(cur)
    values, order = torch.cat([ref, cur]).T.contiguous().sort(dim=1)
    steps = (order < n).double() * (1.0 / n + 1.0 / m) - 1.0 / m
    gaps = steps.cumsum(dim=1).abs()
    end_of_run = torch.ones_like(values, dtype=torch.bool)
    end_of_run[:, :-1] = values[:, 1:] != values[:, :-1]
    return (gaps * end_of_run).amax(dim=1)


def _ks_critical(alpha: float, n: int, m: int) -> float:
    """Asymptotic critical value of the two-sample KS statistic at level `alpha`."""
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))
