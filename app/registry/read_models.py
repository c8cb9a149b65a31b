"""Typed read models of the registry side: model versions seen in traffic with what they
served (`model_versions`), and a request's lineage to MLflow runs and datasets (`lineage`).

The run, dataset and alias-event entries are kept as MLflow gave them when the version was
resolved (`model_versions.lineage`), so they stay plain JSON objects here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.store.read_models import Usage


class ModelVersionSummary(BaseModel):
    """A model version seen in traffic: how much it served and how it went."""

    name: str
    version: str
    role: str | None = Field(description="The stage it served (world_model, planner, ...)")
    status: str = Field(
        description="`resolved` once MLflow knew it, else `unresolved`; `registered`: in "
        "MLflow's registry, never seen in traffic"
    )
    aliases: list[str]
    first_seen: str | None = Field(description="None for a version never seen in traffic")
    last_seen: str | None
    run_id: str | None
    requests: int
    outcomes: dict[str, int] = Field(description="Requests per outcome")
    policies: dict[str, dict[str, int]] = Field(
        description="Policy evaluations per policy id, then per outcome"
    )
    deny_rate: float
    usage: Usage = Field(
        default_factory=Usage,
        description="Language-model calls, tokens and cost of the requests it served",
    )


class SeenVersion(BaseModel):
    """A model version as the model index holds it, without counting its traffic: what the
    dashboard's lists, filters and lineage graph start from."""

    name: str
    version: str
    role: str | None
    status: str
    aliases: list[str]
    lineage: dict[str, Any] = Field(description="The lineage snapshot (`{}` while unresolved)")
    first_seen_unix_nano: int
    last_seen_unix_nano: int


class VersionTraffic(BaseModel):
    """How many requests a version served, and how many of them were denied."""

    requests: int = 0
    denied: int = 0

    @property
    def deny_rate(self) -> float:
        return self.denied / self.requests if self.requests else 0.0


class ModelVersionDetail(ModelVersionSummary):
    """A model version with its registry tags and the lineage snapshot Warden keeps."""

    tags: dict[str, Any]
    lineage: dict[str, Any] = Field(
        description="MLflow's registry entry, run and datasets as first resolved, and the "
        "alias changes seen since (`{}` while unresolved)"
    )


class LineageLinks(BaseModel):
    """Links into the MLflow UI, when the tracking URI is a server's."""

    version: str | None
    run: str | None


class LineageStage(BaseModel):
    """One stage of a request: the model version that served it, its run, its datasets."""

    role: str
    name: str
    version: str
    status: str
    aliases: list[str]
    tags: dict[str, Any]
    run: dict[str, Any] = Field(description="id, experiment_id, metrics, params; `{}` if none")
    datasets: list[dict[str, Any]]
    alias_events: list[dict[str, Any]]
    links: LineageLinks


class RequestLineage(BaseModel):
    request_id: str
    stages: list[LineageStage]
