"""Response models of the review endpoints the dispatch desk stands on (release, resolve, accuracy)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ErrorAnswer(BaseModel):
    """Every refusal: ``{"detail": "<reason>"}``."""

    detail: str


class ReleasedTicket(BaseModel):
    ticket_id: int
    assigned_to: None = None


class ResolvedTicket(BaseModel):
    ticket_id: int
    status: str = Field(description="always `resolved`")


class FieldAccuracyModel(BaseModel):
    field: str
    reviewed: int = Field(description="reviews of this field's value")
    corrected: int = Field(description="reviews in which a person changed it")
    survived: int
    survived_share: float | None = Field(description="survived / reviewed; null before any review")


class DecisionAccuracyModel(BaseModel):
    value: str = Field(description="the route (or priority) the machine decided")
    reviewed: int = Field(description="reviews that tell a route (priority): desk corrections and resolves, and "
                                      "helpdesk agents' group (priority) changes")
    corrected: int = Field(description="reviews that gave another one")
    survived: int
    survived_share: float | None = Field(description="survived / reviewed; null before any review")


class VersionAccuracyModel(BaseModel):
    extractor: str
    model: str | None
    prompt_version: str | None
    reviewed: int
    corrected: int = Field(description="reviews that changed at least one field")
    fields: list[FieldAccuracyModel]


class CorrectionModel(BaseModel):
    field: str
    before: str = Field(alias="from", description="the extractor's value (JSON unless a string)")
    after: str = Field(alias="to", description="the person's value")
    count: int

    model_config = {"populate_by_name": True, "serialize_by_alias": True}


class AccuracyReport(BaseModel):
    since: datetime | None
    reviewed: int = Field(description="reviews counted: corrections of an extractor's ticket, and resolves "
                                      "without one")
    corrected: int = Field(description="reviews that changed at least one field")
    fields: list[FieldAccuracyModel]
    versions: list[VersionAccuracyModel]
    corrections: list[CorrectionModel] = Field(description="the most common corrections, most frequent first")
    routes: list[DecisionAccuracyModel] = Field(default_factory=list,
                                                description="per machine route, most reviewed first")
    priorities: list[DecisionAccuracyModel] = Field(default_factory=list,
                                                    description="per machine priority, most reviewed first")
