"""Alembic revisions of the service schema, oldest first."""
