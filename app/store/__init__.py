"""Storage: the engines and the SQLite write lock (`engine`), the tables (`tables`), the
schema migrations (`schema`), typed reads (`queries`) returning the models of `read_models`,
and content-addressed tensors (`tensors`).
"""
