"""Drift: is a world-model version's current traffic drifting away from its references?

`detectors/` is the pure part: statistics over samples of requests behind one protocol
(`fit(reference)`, `test(current) -> DriftResult`), one module per kind (input features,
latent states, planner decisions) and a registry of the kinds a job judges; no database, no
HTTP, no MLflow there. The rest of the package is the service around them, and talks to the
database, MLflow and webhooks:

- `job`: a drift job for a project's versions (`DriftRunner`), orchestrating `plan` (which
  versions and windows), `detection` (each window read once from the store by `windows`, the
  references of `reference` offered, every registered detector fitted and tested) and
  `record` (reports stored, the job logged to MLflow, drift policies and rollbacks, `alerts`);
  `results` holds what a job answers.
- `schedule`: the service's thread that runs each project's job when due; `settings`: a
  project's drift settings; `reports`: stored reports, listed; `cli`: `warden drift`.
"""
