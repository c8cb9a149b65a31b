"""OTLP/HTTP trace ingest: decode the body, normalise spans into typed rows, store them."""
