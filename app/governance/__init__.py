"""Decisions about models and requests: deploy gates on MLflow aliases (`deploy`), the review
queue (`reviews`), their read models (`read_models`), and the inference gateway that runs a
stack behind the policy gates (`gateway`).
"""
