"""Warden service: HTTP API, storage, ingest, CLI."""
