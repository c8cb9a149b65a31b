"""Typed read models of experiments: the specification a client sends, an experiment as stored
(`ExperimentOut`), with its assignment counts (`ExperimentDetail`), the entry the policy
bundle carries to the SDKs (`BundledExperiment`), and the results document of an experiment
(`ExperimentResults`, `stored_results`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_serializer,
)

from app.experiments.kpis import KpiValues


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
    results: ExperimentResults | None = Field(
        default=None, description="The latest analysis, once there is one"
    )

    @field_validator("results", mode="before")
    @classmethod
    def _none_yet(cls, value: Any) -> Any:
        # A new experiment stores `{}` until its first analysis.
        return value or None


class BundledExperiment(BaseModel):
    """A running experiment as the policy bundle carries it to the SDKs and the gateway."""

    name: str
    stage: str
    unit: str
    salt: str
    arms: list[ArmSpec]
    shadows: list[ShadowSpec]


# The results document (`experiments.results`, written by `app.experiments.results.analyse`),
# typed for its readers. Its JSON stays what `analyse` writes: members these models do not
# name are kept (`extra="allow"`), and a control arm has no comparison members at all.


class ComparisonResult(BaseModel):
    """A treatment against the control on one KPI; null bounds for an infinite interval."""

    difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    verdict: str = "inconclusive"


class ArmResult(BaseModel):
    """One arm's figures; the treatment-only members are absent (None) for the control."""

    model_config = ConfigDict(extra="allow")

    n: int = 0
    kpis: KpiValues = Field(default_factory=lambda: KpiValues(n=0))
    served: dict[str, int] = Field(
        default_factory=dict, description="Requests per `model name/version` it served"
    )
    comparisons: dict[str, ComparisonResult] | None = None
    verdict: str | None = Field(
        default=None, description="better, worse, inconclusive or `invalid: SRM`"
    )
    worse_on: list[str] | None = None
    better_on: list[str] | None = None
    guardrails_breached: list[str] | None = None

    @model_serializer(mode="wrap")
    def _as_stored(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The control's document has no comparison members: leave them out, not null.
        out: dict[str, Any] = handler(self)
        for key in _TREATMENT_ONLY:
            if out.get(key) is None:
                out.pop(key, None)
        return out


_TREATMENT_ONLY = ("comparisons", "verdict", "worse_on", "better_on", "guardrails_breached")


class SampleRatioResult(BaseModel):
    counts: dict[str, int] = Field(default_factory=dict)
    expected: dict[str, float] = Field(default_factory=dict)
    p_value: float | None = None
    mismatch: bool = False


class ShadowDisagreement(BaseModel):
    request_id: str
    shadow_trace_id: str
    live_chosen: str | None = None
    shadow_chosen: str | None = None


class ShadowResult(BaseModel):
    """A shadow arm's decisions against the live ones (up to 50 disagreements kept)."""

    runs: int = 0
    compared: int = 0
    agreement: float | None = None
    disagreements: list[ShadowDisagreement] = Field(default_factory=list)


class CurveArm(BaseModel):
    n: int
    mean: float


class CurvePoint(BaseModel):
    """Cumulated up to `until` (Unix ns): each arm's mean, each treatment's difference."""

    until: int
    arms: dict[str, CurveArm] = Field(default_factory=dict)
    differences: dict[str, ComparisonResult] = Field(default_factory=dict)


class ExperimentResults(BaseModel):
    """An experiment's latest analysis: per arm its KPIs and (treatments) comparisons with
    the control, the sample-ratio check, shadow agreement, and the curves over time of the
    primary KPI's and guardrails' per-request measures (`series`, keyed by measure)."""

    model_config = ConfigDict(extra="allow")

    computed_at: datetime
    control: str
    primary_kpi: str
    guardrails: list[str] = Field(default_factory=list)
    srm: SampleRatioResult = Field(default_factory=SampleRatioResult)
    arms: dict[str, ArmResult] = Field(default_factory=dict)
    shadows: dict[str, ShadowResult] = Field(default_factory=dict)
    series: dict[str, list[CurvePoint]] = Field(default_factory=dict)

    @field_serializer("computed_at")
    def _iso(self, value: datetime) -> str:
        # As `analyse` stores it (`datetime.isoformat()`, "+00:00"), not pydantic's "Z".
        return value.isoformat()

    def treatments(self) -> list[tuple[str, ArmResult]]:
        """The arms compared with the control, in order."""
        return [(name, arm) for name, arm in self.arms.items() if name != self.control]


def stored_results(document: dict[str, Any] | ExperimentResults | None) -> ExperimentResults | None:
    """The stored results document as `ExperimentResults`; None when there is none yet
    (`{}` or null, as a new experiment holds)."""
    if isinstance(document, ExperimentResults):
        return document
    if not document:
        return None
    return ExperimentResults.model_validate(document)


ExperimentDetail.model_rebuild()  # its `results` names a model defined after it
