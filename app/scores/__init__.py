"""Feedback on requests: score configs per project, scores recorded through the API or sent
over OTLP by the SDK (`collectors.score`), and the reads other parts build on (the
corrections and escalations of `queries`).

    validation.py   what a config may say and what a score may hold (pure)
    spans.py        a `warden.score` root span as a score to record (pure)
    configs.py      score configs: put, list, delete
    recording.py    storing a score with its `score.recorded` ledger event
    queries.py      scores of a request; corrections and escalations among requests
    read_models.py  what the reads answer
"""
