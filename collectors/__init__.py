"""Warden's instrumentation SDK, which runs inside the user's inference process.

It records each request of a hybrid stack as OpenTelemetry spans under the attribute names of
docs/conventions.md and exports them over OTLP/HTTP to the service's `POST /v1/traces`.
"""
