-- Run once, by the postgres image, when its data volume is empty: the MLflow tracking server
-- keeps its runs and registered models in a database of its own beside Warden's.
CREATE DATABASE mlflow;
