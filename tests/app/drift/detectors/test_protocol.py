"""Every registered detector keeps the one protocol: fitted on a reference, quiet on that
same sample, "drift" on a clearly shifted one, Skipped (never "none") on a sample without
its data; and the registry names the kinds without importing the detectors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.drift import reports
from app.drift.detectors import registry
from app.drift.detectors.protocol import (
    TRAFFIC,
    TRAINING,
    Detector,
    Options,
    Skipped,
)
from app.drift.detectors.sample import DecisionSample, Sample

ROWS = 300
OPTIONS = Options(min_requests=50, permutations=100, seed=0, artifacts=False)
ROOT = Path(__file__).resolve().parents[4]


def sample(seed: int, shift: float = 0.0) -> Sample:
    """`ROWS` requests; `shift` 1.0 moves every feature, every latent coordinate and the
    planner's choices, margins and constraint binding."""
    rng = np.random.default_rng(seed)
    kinds = ["book", "clarify", "deny"]
    mix = [0.7, 0.2, 0.1] if shift == 0 else [0.3, 0.3, 0.4]
    features = pd.DataFrame({
        "hours": rng.normal(2 + shift, 1, ROWS),
        "guests": rng.poisson(3 + 3 * shift, ROWS),
        "room": rng.choice(["a", "b", "c"], ROWS, p=[0.5, 0.3, 0.2] if shift == 0 else None),
    })  # fmt: skip
    latent = {
        layer: rng.normal(shift, 1, size=(ROWS, 8)).astype(np.float32)
        for layer in ("dynamics", "encoder")
    }
    decisions = DecisionSample(
        chosen=[f"{k}:room-{i % 7}@10" for i, k in enumerate(rng.choice(kinds, ROWS, p=mix))],
        score=rng.normal(2 - shift, 0.5, ROWS),
        confidence=rng.uniform(0.5 - shift / 4, 1 - shift / 4, ROWS),
        margin=rng.exponential(1 + shift, ROWS),
        entropy=rng.uniform(0, 1 + shift, ROWS),
        constraints_bound=rng.random(ROWS) < 0.1 + shift / 2,
    )
    return Sample(features, latent, decisions)


@pytest.fixture(scope="module")
def calm() -> Sample:
    return sample(1)


@pytest.mark.parametrize("kind", registry.KINDS)
def test_a_registered_detector_keeps_the_protocol(kind: str, calm: Sample) -> None:
    detector = registry.load(registry.DETECTORS[kind])(OPTIONS)
    assert isinstance(detector, Detector)
    assert detector.references and set(detector.references) <= {TRAINING, TRAFFIC}
    fitted = detector.fit(calm)
    itself = fitted.test(calm)
    assert itself.verdict == "none" and itself.share_drifted == 0.0
    moved = fitted.test(sample(2, shift=1.0))
    assert moved.verdict == "drift" and 0 < moved.share_drifted <= 1
    # Scores are stored as they are: plain JSON, numbers included.
    assert json.loads(json.dumps(moved.scores)) == moved.scores
    assert moved.artifacts == {}  # none asked for
    # Testing leaves the fitted detector as it was: the same sample, the same answer.
    assert fitted.test(calm).scores == itself.scores


@pytest.mark.parametrize("kind", registry.KINDS)
def test_a_sample_without_the_kinds_data_is_skipped_not_none(kind: str, calm: Sample) -> None:
    fitted = registry.load(registry.DETECTORS[kind])(OPTIONS).fit(calm)
    with pytest.raises(Skipped) as skipped:
        fitted.test(Sample(features=pd.DataFrame(index=range(ROWS))))
    assert str(skipped.value)  # says why


def test_the_kinds_are_named_without_importing_the_detectors() -> None:
    assert reports.KINDS == registry.KINDS == tuple(registry.registered())
    code = (
        "import sys, app.drift.reports, app.drift.detectors.registry as r; "
        "heavy = {'pandas', 'scipy', 'torch', 'evidently'} & set(sys.modules); "
        "assert not heavy, heavy; print(r.KINDS)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "('input', 'latent', 'decision')"
