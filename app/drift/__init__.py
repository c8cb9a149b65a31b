"""Drift detection: pure statistics over arrays and frames, no database and no HTTP.

Three detectors, each returning a frozen result with a `verdict` of "none", "warn" or "drift"
and a `to_json()` made of plain numbers, strings and lists:

- `app.drift.latent`: latent-state drift of one world-model layer, a kernel two-sample test
  (MMD with random Fourier features and a permutation p-value, in torch), linear in the window.
- `app.drift.decisions`: decision drift of the planner (action-kind mix, scores, confidence,
  margins, entropy, constraint binding), several tests under a Holm correction.
- `app.drift.inputs`: input drift of the structured intent features, Evidently's
  `DataDriftPreset`, with a dataset verdict that one drifted column cannot trip.
"""
