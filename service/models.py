"""The registry: SQLAlchemy 2 typed models (docs/service.md describes them). Alembic migrations mirror these.

    with Session() as s:
        lg = s.scalars(select(Learngene).order_by(Learngene.id.desc())).first()

Weights and datasets are not stored here: a row keeps the sha256 of its artifact (see artifacts.py).
"""
from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Enum, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC on the way out; SQLite would otherwise hand back naive datetimes."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONType, list[Any]: JSONType, datetime: UTCDateTime}


class JobStatus(str, enum.Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def final(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


class JobKind(str, enum.Enum):
    task = "task"
    individual = "individual"


# Enums are stored as plain strings (no CHECK/ENUM type) so adding a value needs no migration dance.
StatusColumn = Enum(JobStatus, native_enum=False, create_constraint=False, length=16)


class Collective(Base):
    __tablename__ = "collective"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    channels: Mapped[int]
    size: Mapped[int]
    preset: Mapped[str] = mapped_column(String(32))
    seed: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    versions: Mapped[list[CollectiveVersion]] = relationship(
        back_populates="collective", order_by="CollectiveVersion.number"
    )


class CollectiveVersion(Base):
    __tablename__ = "collective_version"
    # The unique pair is the last line of defence against a lost update when two growths race.
    __table_args__ = (UniqueConstraint("collective_id", "number", name="uq_collective_version_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    collective_id: Mapped[int] = mapped_column(ForeignKey("collective.id"), index=True)
    number: Mapped[int]
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("collective_version.id"))
    widths: Mapped[list[Any]]
    parameters: Mapped[int]
    label_space: Mapped[list[Any]]
    accuracy_matrix: Mapped[list[Any]]
    threshold: Mapped[float | None] = mapped_column(Float)
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    weights_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    collective: Mapped[Collective] = relationship(back_populates="versions")


class Task(Base):
    __tablename__ = "task"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    collective_id: Mapped[int] = mapped_column(ForeignKey("collective.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str | None] = mapped_column(String(255))
    classes: Mapped[list[Any]]
    class_counts: Mapped[list[Any]]
    num_samples: Mapped[int]
    channels: Mapped[int]
    size: Mapped[int]
    epochs: Mapped[int | None]
    status: Mapped[JobStatus] = mapped_column(StatusColumn, default=JobStatus.queued)
    new_classes: Mapped[list[Any] | None] = mapped_column(JSONType)
    open_world: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    accuracy: Mapped[float | None] = mapped_column(Float)
    accuracy_row: Mapped[list[Any] | None] = mapped_column(JSONType)
    collective_version_id: Mapped[int | None] = mapped_column(ForeignKey("collective_version.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    collective: Mapped[Collective] = relationship()
    collective_version: Mapped[CollectiveVersion | None] = relationship(foreign_keys=[collective_version_id])


class Learngene(Base):
    __tablename__ = "learngene"

    id: Mapped[int] = mapped_column(primary_key=True)
    collective_version_id: Mapped[int] = mapped_column(ForeignKey("collective_version.id"), index=True)
    method: Mapped[str] = mapped_column(String(32), index=True)
    layers: Mapped[list[Any]]
    scores: Mapped[list[Any]]
    grad_stats: Mapped[dict[str, Any]]
    candidates: Mapped[list[Any]] = mapped_column(default=list)
    parameters: Mapped[int] = mapped_column(index=True)
    channels: Mapped[int]
    size: Mapped[int]
    tags: Mapped[list[Any]] = mapped_column(default=list)
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    weights_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    collective_version: Mapped[CollectiveVersion] = relationship()


class Individual(Base):
    __tablename__ = "individual"

    id: Mapped[int] = mapped_column(primary_key=True)
    learngene_id: Mapped[int] = mapped_column(ForeignKey("learngene.id"), index=True)
    init: Mapped[str] = mapped_column(String(16))
    classes: Mapped[list[Any]]
    shots: Mapped[dict[str, Any]]  # class name -> support samples
    options: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    parameters: Mapped[int]
    channels: Mapped[int]
    size: Mapped[int]
    support_sha256: Mapped[str] = mapped_column(String(64))
    eval_sha256: Mapped[str | None] = mapped_column(String(64))
    weights_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    learngene: Mapped[Learngene] = relationship()


class Job(Base):
    __tablename__ = "job"
    # An Idempotency-Key is unique per API key (its scope), not across the whole service.
    __table_args__ = (UniqueConstraint("kind", "idempotency_scope", "idempotency_key",
                                       name="uq_job_idempotency_scoped"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[JobKind] = mapped_column(Enum(JobKind, native_enum=False, create_constraint=False, length=16))
    status: Mapped[JobStatus] = mapped_column(StatusColumn, default=JobStatus.queued, index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("task.id"), index=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    idempotency_scope: Mapped[str] = mapped_column(String(40), default="", server_default="")
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # The fencing token: each claim adds one, and every later write of that run names the number it got.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))
    device: Mapped[str | None] = mapped_column(String(200))  # where the run trained: `cuda:0 NVIDIA H200`, `cpu (...)`
    heartbeat_at: Mapped[datetime | None]
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # +1 per change: the SSE id
    progress_at: Mapped[datetime | None]  # the last progress write: a live heartbeat without it is a stall
    published_at: Mapped[datetime | None] = mapped_column(default=utcnow)  # the last message sent for it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class GrowLease(Base):
    """Who may grow a collective now: one job run (job id and attempt) until `expires_at`, renewed while it
    trains. Taken, renewed and released in short transactions, so nothing waits on a lock during training."""

    __tablename__ = "grow_lease"

    collective_id: Mapped[int] = mapped_column(ForeignKey("collective.id"), primary_key=True)
    job_id: Mapped[int]
    attempt: Mapped[int]
    expires_at: Mapped[datetime]


class Worker(Base):
    """A worker process that recently said it is alive (readiness, and later the reaper)."""

    __tablename__ = "worker"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    queues: Mapped[list[Any]]
    pid: Mapped[int]
    device: Mapped[str | None] = mapped_column(String(200))  # announced by its pool process (workers/heartbeat.py)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """An API key: only the sha256 of the token is stored; the token is shown once, when it is made."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    scope: Mapped[str] = mapped_column(String(16))  # "read" or "write"
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class LearngeneAlias(Base):
    """A name (`champion`) pointing at one learngene, so clients need not track ids (PUT /learngenes/aliases/...)."""

    __tablename__ = "learngene_alias"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    learngene_id: Mapped[int] = mapped_column(ForeignKey("learngene.id"), index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class LearngeneAliasEvent(Base):
    """One move of an alias (set, moved or deleted), written in the same transaction as the move."""

    __tablename__ = "learngene_alias_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    from_learngene_id: Mapped[int | None]  # None: the alias is new
    to_learngene_id: Mapped[int | None]  # None: the alias was deleted
    api_key_id: Mapped[int | None]  # who moved it (None with LEARNGENE_AUTH=off)
    at: Mapped[datetime] = mapped_column(default=utcnow)
