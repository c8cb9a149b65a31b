"""Drift detectors: pure statistics over samples of requests, no database, no HTTP, no MLflow.

Every kind keeps one protocol (`protocol.Detector`: `fit(reference)`, then
`test(current) -> DriftResult`, or `Skipped` with the reason) and reads one type of data
(`sample.Sample`: input features, latent states per layer, planner decisions). The kinds a
job judges are listed in `registry`:

- `inputs`: input drift of the structured intent features, Evidently's data-drift tests per
  column, with a dataset verdict that one drifted column cannot trip; fitted on the training
  dataset when the lineage has one.
- `latent`: latent-state drift per world-model layer, a kernel two-sample test (MMD with
  random Fourier features and a permutation p-value, in torch), linear in the window.
- `decisions`: decision drift of the planner (action-kind mix, scores, confidence, margins,
  entropy, constraint binding), several tests under a Holm correction.
"""
