"""Storage: the engines and the SQLite write lock (`engine`), where SQLite and PostgreSQL
differ (`dialect`), the tables (`tables`), the schema migrations (`schema`), typed reads
(`queries`), per-project settings sections (`project_settings`), content-addressed tensors
(`tensors`) and the leadership of periodic jobs (`leadership`).
"""
