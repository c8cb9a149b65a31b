"""Storage: the engines and the SQLite write lock (`engine`), where SQLite and PostgreSQL
differ (`dialect`), the tables (`tables`), the schema migrations (`schema`), typed reads
(`queries`) and content-addressed tensors (`tensors`).
"""
