"""A project's experiment settings, kept in `projects.settings` under `experiments`.

What counts as a successful plan or an escalation, what an inference costs (a price per
1,000 LLM tokens per model, and the world model's time), whether a promotion needs experiment
evidence, and the quantile of the reference's own distances beyond which a latent state is
out of distribution. Every field has a default. Set with `warden experiment configure`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Connection, Engine

from app.store.engine import read_connection, write_transaction
from app.store.project_settings import merge_section, read_section

KEY = "experiments"


class Price(BaseModel):
    """What 1,000 tokens in and out of one language model cost (in the project's currency)."""

    input_per_1k_tokens: float = Field(default=0.0, ge=0)
    output_per_1k_tokens: float = Field(default=0.0, ge=0)

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        """What a call with these tokens costs."""
        return (
            input_tokens * self.input_per_1k_tokens + output_tokens * self.output_per_1k_tokens
        ) / 1000


class ExperimentSettings(BaseModel):
    """How one project's decision KPIs are computed and what its deploy gate asks for."""

    success_outcomes: list[str] = Field(
        default_factory=lambda: ["booked"],
        description="request outcomes that count as a successful plan",
    )
    escalation_outcomes: list[str] = Field(
        default_factory=lambda: ["handed_over"],
        description="request outcomes that count as handed to a person",
    )
    prices: dict[str, Price] = Field(
        default_factory=dict, description="per language-model name: its price per 1k tokens"
    )
    world_model_cost_per_second: float = Field(
        default=0.0, ge=0, description="cost of one second of the world model's rollout"
    )
    require_experiment: bool = Field(
        default=False,
        description="a promotion needs an experiment that judged the candidate version",
    )
    ood_quantile: float = Field(
        default=0.99,
        gt=0.5,
        lt=1.0,
        description="a latent state beyond this quantile of the reference's own distances "
        "is out of distribution",
    )
    ood_reference_count: int = Field(
        default=200,
        ge=20,
        le=100_000,
        description="a version's first N requests with a latent state are its OOD reference",
    )


def price_of(config: ExperimentSettings, *models: object) -> Price | None:
    """The price of the first of `models` (e.g. the response model, then the request model)
    that is named and has one."""
    for model in models:
        if model and (price := config.prices.get(str(model))) is not None:
            return price
    return None


def read(conn: Connection, project_id: int) -> ExperimentSettings:
    return read_section(conn, project_id, KEY, ExperimentSettings)


def load(engine: Engine, project_id: int) -> ExperimentSettings:
    with read_connection(engine) as conn:
        return read_section(conn, project_id, KEY, ExperimentSettings)


def update_settings(engine: Engine, project_id: int, changes: dict[str, Any]) -> ExperimentSettings:
    """Apply `changes` on top of the stored settings; invalid changes store nothing (400)."""
    with write_transaction(engine) as conn:
        return merge_section(conn, project_id, KEY, ExperimentSettings, changes)
