"""The model registry side: versions seen in traffic resolved to their MLflow runs and datasets
(`lineage`, `model_versions`, their read models in `read_models`), the registry's versions and
aliases as MLflow holds them now (`registered`), and Warden's results written back to MLflow
(`mlflow_results`).
"""
