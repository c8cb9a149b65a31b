"""Typed read models of experiments: the specification a client sends, an experiment as stored
(`ExperimentOut`), with its assignment counts (`ExperimentDetail`), and the entry the policy
bundle carries to the SDKs (`BundledExperiment`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class ArmSpec(BaseModel):
    """One arm: the model version (or alias) that serves the stage for its share of units."""

    name: str = Field(description="A slug, unique in the experiment; the first arm is the control")
    model: str = Field(description="`models:/name/version` or `models:/name@alias`")
    weight: float = Field(default=1.0, description="Relative share of units (> 0)")


class ShadowSpec(BaseModel):
    """A shadow arm: run on a sampled share of requests after the answer, never returned."""

    name: str = Field(description="A slug, unique among the arms and shadows")
    model: str = Field(description="`models:/name/version` or `models:/name@alias`")
    sample_rate: float = Field(default=1.0, description="Share of units in (0, 1]")


class ExperimentSpec(BaseModel):
    """What creating an experiment takes (`POST /v1/experiments`)."""

    name: str = Field(description="A slug, unique in the project")
    stage: str = Field(description="The stage it varies: `world_model` or `planner`")
    arms: list[ArmSpec] = Field(description="At least two; the first is the control")
    shadows: list[ShadowSpec] = Field(default_factory=list)
    unit: str = Field(
        default="subject",
        description="`subject` (sticky: a subject keeps its arm) or `request`",
    )
    primary_kpi: str = Field(default="plan_success_rate", description="The KPI that decides")
    guardrails: list[str] = Field(
        default_factory=list, description="KPIs that must not get worse"
    )
    description: str | None = None
    salt: str | None = Field(
        default=None, description="Mixed into the assignment hash; random unless given"
    )
    ends_at: datetime | None = Field(default=None, description="Planned end (informative)")


class ExperimentOut(BaseModel):
    """An experiment as stored."""

    name: str
    description: str | None
    stage: str
    unit: str
    salt: str
    arms: list[ArmSpec]
    shadows: list[ShadowSpec]
    primary_kpi: str
    guardrails: list[str]
    status: str = Field(description="`running` or `stopped`")
    created_by: str | None
    created_at: datetime
    starts_at: datetime
    ends_at: datetime | None
    stopped_at: datetime | None


class ExperimentDetail(ExperimentOut):
    """An experiment with the requests each arm served so far, and its latest results."""

    counts: dict[str, int] = Field(description="Requests assigned per arm (every arm named)")
    results: dict[str, Any] | None = Field(
        default=None, description="The latest analysis, once there is one"
    )


class BundledExperiment(BaseModel):
    """A running experiment as the policy bundle carries it to the SDKs and the gateway."""

    name: str
    stage: str
    unit: str
    salt: str
    arms: list[ArmSpec]
    shadows: list[ShadowSpec]
