"""Latent-state drift: calibrated under no shift, sensitive to mean, scale and covariance
changes, pointing at the moved coordinates, and the same with a cached reference."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats

from app.drift.detectors.latent import MIN_SAMPLES, LatentReference, latent_drift

DIM = 16


def normal(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    return rng.normal(size=(n, dim)).astype(np.float32)


def test_false_positives_stay_rare_and_p_values_uniform_without_shift() -> None:
    rng = np.random.default_rng(2024)
    results = [latent_drift(normal(rng, 100), normal(rng, 100), seed=seed) for seed in range(50)]
    p_values = np.array([r.p_value for r in results])
    verdicts = [r.verdict for r in results]
    assert verdicts.count("drift") <= 3  # nominal 1%; 3 of 50 is 6%
    assert verdicts.count("drift") + verdicts.count("warn") <= 5  # nominal 5%
    # The permutation p-value lives on a grid of 1/101: uniform up to that step.
    assert stats.kstest(p_values, "uniform").pvalue > 0.01
    assert all(r.moved_dimensions == () for r in results if r.verdict == "none")


def test_a_small_mean_shift_in_two_dimensions_is_found_and_located() -> None:
    rng = np.random.default_rng(7)
    current = normal(rng, 1000)
    current[:, [3, 11]] += 0.3
    result = latent_drift(normal(rng, 1000), current)
    assert result.verdict == "drift"
    assert result.p_value == pytest.approx(1 / 101)
    assert set(result.moved_dimensions) == {3, 11}
    shifts = {s.dimension: s.mean_shift for s in result.per_dimension}
    assert shifts[3] == pytest.approx(0.3, abs=0.1)
    assert shifts[11] == pytest.approx(0.3, abs=0.1)
    ranked = sorted(result.per_dimension, key=lambda s: s.ks, reverse=True)
    assert {ranked[0].dimension, ranked[1].dimension} == {3, 11}


def test_a_change_of_scale_alone_is_found() -> None:
    rng = np.random.default_rng(8)
    current = normal(rng, 1000)
    current[:, :4] *= 1.5
    result = latent_drift(normal(rng, 1000), current)
    assert result.verdict == "drift"
    assert all(abs(s.mean_shift) < 0.15 for s in result.per_dimension)
    assert {s.dimension for s in result.per_dimension if s.std_ratio > 1.3} == {0, 1, 2, 3}
    assert set(result.moved_dimensions) <= {0, 1, 2, 3}


def test_a_change_of_covariance_with_unchanged_marginals_is_found() -> None:
    rng = np.random.default_rng(9)
    n = 1000
    factor = rng.normal(size=(n, 1))
    # Every coordinate still N(0, 1), but now 30% of each one's variance is shared.
    current = (np.sqrt(0.7) * rng.normal(size=(n, DIM)) + np.sqrt(0.3) * factor).astype(np.float32)
    result = latent_drift(normal(rng, n), current)
    assert result.verdict == "drift"
    assert all(abs(s.mean_shift) < 0.15 and 0.9 < s.std_ratio < 1.1 for s in result.per_dimension)
    assert result.moved_dimensions == ()  # no single coordinate moved: only the joint did


def test_a_cached_reference_gives_the_uncached_answer() -> None:
    rng = np.random.default_rng(10)
    reference, current = normal(rng, 3000), normal(rng, 800)
    current[:, 0] += 0.2
    built = LatentReference.build(reference, seed=5)
    cached = latent_drift(built, current, seed=5)
    assert cached == latent_drift(reference, current, seed=5)
    assert cached.verdict == "drift"
    # Reused for another window, the reference is not rebuilt or changed.
    features = built.features.clone()
    latent_drift(built, normal(rng, 500), seed=6)
    assert torch.equal(built.features, features)


def test_the_reference_is_subsampled_to_its_cap() -> None:
    rng = np.random.default_rng(11)
    built = LatentReference.build(normal(rng, 2000), max_rows=500, features=64)
    assert built.rows_seen == 2000
    assert tuple(built.sample.shape) == (500, DIM)
    assert tuple(built.features.shape) == (500, 64)
    result = latent_drift(built, normal(rng, 300))
    assert (result.n_reference, result.n_current, result.features) == (500, 300, 64)


def test_torch_tensors_and_numpy_arrays_give_the_same_answer() -> None:
    rng = np.random.default_rng(12)
    reference, current = normal(rng, 300), normal(rng, 300)
    assert latent_drift(reference, current) == latent_drift(
        torch.from_numpy(reference), torch.from_numpy(current)
    )


def test_the_result_is_plain_json() -> None:
    rng = np.random.default_rng(13)
    result = latent_drift(normal(rng, 100), normal(rng, 100) + 1.0)
    document = json.loads(json.dumps(result.to_json()))
    assert document["verdict"] == "drift"
    assert len(document["per_dimension"]) == DIM
    assert set(document["per_dimension"][0]) == {"dimension", "mean_shift", "std_ratio", "ks"}
    assert sorted(document["moved_dimensions"]) == list(range(DIM))


def test_a_tiny_window_is_refused_not_called_stable() -> None:
    rng = np.random.default_rng(14)
    with pytest.raises(ValueError, match=f"at least {MIN_SAMPLES}"):
        latent_drift(normal(rng, 500), normal(rng, MIN_SAMPLES - 1))
    with pytest.raises(ValueError, match="NaN"):
        latent_drift(normal(rng, 500), np.full((50, DIM), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="dimensions"):
        latent_drift(normal(rng, 500), normal(rng, 50, dim=8))


def test_few_permutations_raise_the_drift_threshold_to_the_smallest_p() -> None:
    rng = np.random.default_rng(15)
    reference, current = normal(rng, 300), normal(rng, 300) + 1.0
    result = latent_drift(reference, current, permutations=20)
    assert result.drift_p == pytest.approx(1 / 21)
    assert result.verdict == "drift"
    with pytest.raises(ValueError, match="permutations"):
        latent_drift(reference, current, permutations=10)


def test_per_dimension_ks_statistics_match_scipy_even_with_ties() -> None:
    rng = np.random.default_rng(16)
    reference, current = normal(rng, 400), normal(rng, 300)
    current[:, 5] += 0.5
    reference[:, 2], current[:, 2] = np.round(reference[:, 2]), np.round(current[:, 2])
    result = latent_drift(reference, current)
    for shift in result.per_dimension:
        expected = stats.ks_2samp(reference[:, shift.dimension], current[:, shift.dimension])
        assert shift.ks == pytest.approx(expected.statistic, abs=1e-9)
    assert result.moved_dimensions == (5,)
