"""Storage: the engines and the SQLite write lock (`engine`), the tables (`tables`), the schema
migrations (`schema`), typed reads (`queries`), per-project settings sections
(`project_settings`) and content-addressed tensors (`tensors`).
"""
