"""Experiments: traffic splits between model versions of one stage, shadow runs, and the
decision KPIs that judge them.

- `settings`: a project's `experiments` settings section (successful outcomes, prices, ...).
- `kpis`: the decision KPIs of a set of requests (a model version's, an experiment arm's),
  read from the typed tables, with per-unit summaries and series over time for the statistics.
- `analysis`: the pure statistics (always-valid comparisons, sample-ratio mismatch).
- `results`: an experiment's arms compared on every KPI, verdicts stored, written back to
  MLflow, offered to the `deploy` policies; `ResultsWorker` refreshes running experiments.
"""
