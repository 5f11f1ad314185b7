"""Request and response bodies. `*Create` is what a client sends, `*Public` what it gets back.

    def create_task(form: Annotated[TaskCreate, Form()], file: UploadFile) -> JobPublic: ...

Multipart endpoints read their form fields into a `*Create` model; routers build `*Public` from rows.
"""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from .settings import PRESET_NAMES

T = TypeVar("T")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # collective names (and so every filter or path naming one)
METHOD_PATTERN = r"^[A-Za-z0-9._-]+$"
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"  # free text: no control characters (PostgreSQL refuses NUL in text)
Name = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NAME_PATTERN)]


class Page(BaseModel, Generic[T]):
    items: list[T]
    limit: int
    next_cursor: str | None = Field(None, description="pass as ?cursor= to get the next page; null on the last")


# Jobs ---------------------------------------------------------------------------------------------


class JobProgress(BaseModel):
    model_config = ConfigDict(extra="allow")

    stage: str = "queued"
    epoch: int | None = None
    epochs: int | None = None
    loss: float | None = None
    fraction: float = 0.0


class JobPublic(BaseModel):
    id: int
    kind: Literal["task", "individual"]
    task_id: int | None = Field(None, description="the task this job learns (task jobs); null for individual jobs")
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: JobProgress
    error: str | None = None
    result: dict[str, Any] | None = Field(
        None, description="on success: task_id, collective_version, learngene_id (task) or individual_id"
    )
    cancel_requested: bool = False
    attempts: int = 0
    worker: str | None = Field(None, description="the worker that ran (or runs) the job")
    device: str | None = Field(None, description="the device it ran on there: `cuda:0 NVIDIA H200`, `cpu (4 threads)`")
    links: dict[str, str] = {}
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class TaskJobPublic(JobPublic):
    """The job of a task upload: it always names its task."""

    task_id: int


# Collectives and tasks ----------------------------------------------------------------------------


class CollectiveCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_booleans(cls, data: Any) -> Any:
        # pydantic reads `false` as 0 for an int; JSON Schema's integer does not include booleans.
        if isinstance(data, dict):
            for key, value in data.items():
                if isinstance(value, bool):
                    raise ValueError(f"{key}: a boolean is not a number")
        return data

    name: Name
    channels: Literal[1, 3]
    size: int = Field(ge=8, le=512)
    preset: Literal[PRESET_NAMES] = Field(
        "small", description="the network's widths: small, or wide (twice small's, 3.3 x its CPU time per step: "
        "for GPU workers)")
    seed: int = Field(0, ge=0, le=2**31 - 1)


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
    head: int | None = Field(None, description="the newest version number; null before the first task")
    versions: list[CollectiveVersionPublic] = []


class TaskCreate(BaseModel):
    name: str | None = Field(None, max_length=200, pattern=TEXT_PATTERN, description="default: the uploaded file's name")
    collective: Name | None = Field(None, description="default: `default` (LEARNGENE_DEFAULT_COLLECTIVE)")
    epochs: int | None = Field(None, ge=1, le=1000)
    allow_duplicate: bool = Field(False, description="learn a file whose content already grew this collective again")


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
    accuracy: float | None = Field(None, description="held-out accuracy on this task after training")
    accuracy_row: list[float | None] | None = Field(None, description="accuracy on every task so far, after this one")
    collective_version: int | None = None
    learngene_id: int | None = None
    job_id: int | None = None
    created_at: datetime
    finished_at: datetime | None = None


# Learngenes --------------------------------------------------------------------------------------


class LearngenePublic(BaseModel):
    id: int
    collective: str
    collective_version: int
    method: str
    layers: list[int]
    parameters: int
    scores: list[float] = Field(description="per-layer stability score (lower is more stable)")
    channels: int
    size: int
    tags: list[str]
    aliases: list[str] = Field([], description="names pointing at this learngene (PUT /learngenes/aliases/{name})")
    created_at: datetime


class AliasPublic(BaseModel):
    name: str
    learngene_id: int
    updated_at: datetime


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
    storage: dict[str, Any] | None = Field(
        None, description="parameters stored for this learngene (every size is built from it) against storing one "
        "pretrained model per size for a ladder of sizes (the size benchmark's five budgets, ¼× to 2× today's "
        "individual at 20 classes), and their ratio; null when the learngene predates the record of its source "
        "widths")
    links: dict[str, str]


# Individuals -------------------------------------------------------------------------------------


class IndividualCreate(BaseModel):
    learngene_id: int | None = Field(None, ge=1, le=2**31 - 1, description="default: the newest learngene")
    learngene_alias: str | None = Field(None, max_length=100, description="a learngene alias (`champion`) "
                                        "instead of learngene_id")
    init: Literal["auto", "learngene", "scratch", "instant", "probe"] = Field(
        "auto", description="auto (default): the best of the others for this support set, by cross-validation "
        "over its shots (one shot: by the learngene's validation evidence); learngene: the small net built from "
        "the learngene; scratch: the same net, nothing inherited; instant: no training, the collective's "
        "features with a prototype head; probe: the collective's frozen features with a linear head fitted to the "
        "support (a logistic regression, under a second)")
    epochs: int | None = Field(None, ge=1, le=1000)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    lr: float | None = Field(None, gt=0, le=10)
    anchor: float = Field(0.0, ge=0, le=1e6, description="penalty keeping inherited weights near their start")
    distill: float | None = Field(
        None, ge=0, le=100, description="learngene init: weight of learning the instant model's soft answers on "
        "the augmented support beside the labels (knowledge distillation); 0 turns it off; default: the "
        "library's (docs/method.md)")
    max_parameters: int | None = Field(
        None, ge=1, le=2**31 - 1, description="build the largest model of the learngene's family with at most this "
        "many parameters (head included): inherited layers shrunk, widened or repeated to fit; default: today's "
        "size. Too small: 422 budget-too-small with `smallest_budget`")


class VersionRef(BaseModel):
    collective: str
    number: int


class IndividualPublic(BaseModel):
    id: int
    learngene_id: int | None = Field(description="the learngene it inherits; null for `scratch` (nothing inherited)")
    init: str
    based_on_collective_version: VersionRef | None = Field(
        None, description="`scratch` only: the collective version whose learngene's network shape it copies, "
                          "for comparison with learngene-initialised models")
    classes: list[str]
    shots: dict[str, int]
    parameters: int
    metrics: dict[str, Any]
    options: dict[str, Any]
    channels: int
    size: int = Field(description="the input images' side in pixels")
    sizing: dict[str, Any] | None = Field(
        None, description="built to a parameter budget (max_parameters): max_parameters, parameters, multiplier, "
        "shrink, refit, and per layer its position, width, source width and how it was derived (inherited, "
        "shrunk-even, shrunk-importance, either with ', refitted' when its weights were re-fitted by least "
        "squares on the support, widened, repeated, fresh); null when built at the default size")
    sha256: str
    links: dict[str, str]
    created_at: datetime


class Prediction(BaseModel):
    label: str
    probabilities: dict[str, float]
    unknown: bool


class Conversion(BaseModel):
    from_: list[int] = Field(alias="from", description="the images' [height, width, channels] as sent")
    to: list[int] = Field(description="what the model takes: [size, size, channels]")

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class PredictionsPublic(BaseModel):
    predictions: list[Prediction]
    conversion: Conversion | None = Field(
        description="how the images were converted to the model's input (docs/service.md, \"Image conversion\"); "
                    "null when they already had its size and channels")


# Health ------------------------------------------------------------------------------------------


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]
    workers: int
