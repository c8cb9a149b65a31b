"""Experiments: configuration, assignment records, KPIs, analysis and results."""
