"""Storage: the engines and the SQLite write lock (`engine`), where SQLite and PostgreSQL
differ (`dialect`), the tables (`tables`), the schema migrations (`schema`), typed reads
(`queries`) returning the models of `read_models`, per-project settings sections
(`project_settings`), content-addressed tensors (`tensors`) and the leadership of periodic
jobs (`leadership`).
"""
