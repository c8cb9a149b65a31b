"""What the score reads answer: configs and scores as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class ScoreConfigOut(BaseModel):
    """What a score of this name may hold in the project."""

    name: str
    data_type: str = Field(description="numeric, boolean or categorical")
    min_value: float | None = Field(description="numeric: the smallest value allowed")
    max_value: float | None = Field(description="numeric: the largest value allowed")
    categories: list[str] = Field(description="categorical: the values allowed")
    description: str | None
    created_at: datetime
    updated_at: datetime


class ScoreConfigList(BaseModel):
    items: list[ScoreConfigOut]


class ScoreOut(BaseModel):
    """Feedback on one request."""

    key: str = Field(
        description="The score's own id: `<trace>:<span>` of the span that carried it, or "
        "`api:<id>` when recorded through the API"
    )
    request_id: str = Field(description="The scored request (its trace id)")
    name: str
    data_type: str = Field(description="numeric, boolean or categorical")
    value: bool | float | str | None
    source: str = Field(description="human, user, automatic, or review")
    author: str | None
    comment: str | None
    correction: dict[str, Any] | None = Field(
        description="For a human correction: the action the person chose instead"
    )
    created_at: datetime


class ScoreList(BaseModel):
    items: list[ScoreOut]
