"""The service's responses as this client reads them: its own pydantic models, so the client needs no server.

They follow the server's OpenAPI document (tests/api/test_client_models.py compares them: every field here
exists there with a compatible type, and every field the server always sends is here). Fields the server
adds later are ignored, so an older client keeps working against a newer service.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    limit: int
    next_cursor: str | None = None


class JobProgress(BaseModel):
    model_config = ConfigDict(extra="allow")  # stages may report more (e.g. candidate, block)

    stage: str = "queued"
    epoch: int | None = None
    epochs: int | None = None
    loss: float | None = None
    fraction: float = 0.0


class JobPublic(BaseModel):
    id: int
    kind: Literal["task", "individual"]
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: JobProgress
    error: str | None = None
    result: dict[str, Any] | None = None
    cancel_requested: bool = False
    attempts: int = 0
    worker: str | None = None
    links: dict[str, str] = {}
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class CollectiveVersionPublic(BaseModel):
    number: int
    parent: int | None
    widths: list[Any]
    parameters: int
    label_space: list[str]
    accuracy_matrix: list[Any]
    threshold: float | None
    task_id: int | None = None
    learngene_id: int | None = None
    created_at: datetime


class CollectivePublic(BaseModel):
    id: int
    name: str
    channels: int
    size: int
    preset: str
    seed: int
    created_at: datetime
    head: int | None = None
    versions: list[CollectiveVersionPublic] = []


class TaskPublic(BaseModel):
    id: int
    name: str
    collective: str
    status: str
    filename: str | None
    sha256: str
    classes: list[str]
    class_counts: list[int]
    num_samples: int
    channels: int
    size: int
    epochs: int | None
    new_classes: list[str] | None = None
    open_world: dict[str, Any] | None = None
    accuracy: float | None = None
    accuracy_row: list[float | None] | None = None
    collective_version: int | None = None
    learngene_id: int | None = None
    job_id: int | None = None
    created_at: datetime
    finished_at: datetime | None = None


class LearngenePublic(BaseModel):
    id: int
    collective: str
    collective_version: int
    method: str
    layers: list[int]
    parameters: int
    scores: list[float]
    channels: int
    size: int
    tags: list[str]
    aliases: list[str] = Field([], description="names pointing at this learngene (PUT /learngenes/aliases/{name})")
    created_at: datetime


class Lineage(BaseModel):
    collective: str
    collective_version: int
    parent_version: int | None
    task_id: int | None
    task_name: str | None
    tasks_seen: int


class LearngeneDetail(LearngenePublic):
    grad_stats: dict[str, Any]
    candidates: list[Any]
    sha256: str
    lineage: Lineage
    info: dict[str, Any]
    links: dict[str, str]


class AliasPublic(BaseModel):
    name: str
    learngene_id: int
    updated_at: datetime


class IndividualPublic(BaseModel):
    id: int
    learngene_id: int | None
    init: str
    classes: list[str]
    shots: dict[str, int]
    parameters: int
    metrics: dict[str, Any]
    options: dict[str, Any]
    channels: int
    size: int
    sizing: dict[str, Any] | None = None  # built to max_parameters: size and per-layer derivation
    sha256: str
    links: dict[str, str]
    created_at: datetime


class Prediction(BaseModel):
    label: str
    probabilities: dict[str, float]
    unknown: bool


class Conversion(BaseModel):
    """How the images sent were converted to the model's input: [height, width, channels] before and after."""

    model_config = ConfigDict(populate_by_name=True)

    from_: list[int] = Field(alias="from")
    to: list[int]


class PredictionsPublic(BaseModel):
    predictions: list[Prediction]
    conversion: Conversion | None = None


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]
    workers: int
