"""The whole registry: collective, collective_version, task, learngene, individual, job, worker.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Self-contained on purpose (no import of service.models): a migration must keep meaning what it meant
when it was written, whatever the models become.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)
STATUS = sa.Enum("queued", "running", "succeeded", "failed", "cancelled", name="jobstatus", native_enum=False,
                 create_constraint=False, length=16)
KIND = sa.Enum("task", "individual", name="jobkind", native_enum=False, create_constraint=False, length=16)


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), primary_key=True)


def _index(table: str, *columns: str) -> None:
    # Batch mode: SQLite cannot ALTER a table in place; on PostgreSQL this is a plain CREATE INDEX.
    with op.batch_alter_table(table) as batch:
        for column in columns:
            batch.create_index(f"ix_{table}_{column}", [column])


def upgrade() -> None:
    op.create_table(
        "collective", _id(),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("preset", sa.String(32), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "collective_version", _id(),
        sa.Column("collective_id", sa.Integer(), sa.ForeignKey("collective.id"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), sa.ForeignKey("collective_version.id"), nullable=True),
        sa.Column("widths", JSON, nullable=False),
        sa.Column("parameters", sa.Integer(), nullable=False),
        sa.Column("label_space", JSON, nullable=False),
        sa.Column("accuracy_matrix", JSON, nullable=False),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("info", JSON, nullable=False),
        sa.Column("weights_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("collective_id", "number", name="uq_collective_version_number"),
    )
    _index("collective_version", "collective_id")
    op.create_table(
        "task", _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("collective_id", sa.Integer(), sa.ForeignKey("collective.id"), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(255), nullable=True),
        sa.Column("classes", JSON, nullable=False),
        sa.Column("class_counts", JSON, nullable=False),
        sa.Column("num_samples", sa.Integer(), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("epochs", sa.Integer(), nullable=True),
        sa.Column("status", STATUS, nullable=False),
        sa.Column("new_classes", JSON, nullable=True),
        sa.Column("open_world", JSON, nullable=True),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("accuracy_row", JSON, nullable=True),
        sa.Column("collective_version_id", sa.Integer(), sa.ForeignKey("collective_version.id"), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
    )
    _index("task", "collective_id")
    op.create_table(
        "learngene", _id(),
        sa.Column("collective_version_id", sa.Integer(), sa.ForeignKey("collective_version.id"), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("layers", JSON, nullable=False),
        sa.Column("scores", JSON, nullable=False),
        sa.Column("grad_stats", JSON, nullable=False),
        sa.Column("candidates", JSON, nullable=False),
        sa.Column("parameters", sa.Integer(), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("info", JSON, nullable=False),
        sa.Column("weights_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    _index("learngene", "collective_version_id", "method", "parameters")
    op.create_table(
        "individual", _id(),
        sa.Column("learngene_id", sa.Integer(), sa.ForeignKey("learngene.id"), nullable=False),
        sa.Column("init", sa.String(16), nullable=False),
        sa.Column("classes", JSON, nullable=False),
        sa.Column("shots", JSON, nullable=False),
        sa.Column("options", JSON, nullable=False),
        sa.Column("metrics", JSON, nullable=False),
        sa.Column("parameters", sa.Integer(), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("support_sha256", sa.String(64), nullable=False),
        sa.Column("eval_sha256", sa.String(64), nullable=True),
        sa.Column("weights_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    _index("individual", "learngene_id")
    op.create_table(
        "job", _id(),
        sa.Column("kind", KIND, nullable=False),
        sa.Column("status", STATUS, nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("progress", JSON, nullable=False),
        sa.Column("result", JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("task_id", sa.Integer(), sa.ForeignKey("task.id"), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.UniqueConstraint("kind", "idempotency_key", name="uq_job_idempotency"),
    )
    _index("job", "status", "task_id")
    op.create_table(
        "worker",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("queues", JSON, nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("heartbeat_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("worker", "job", "individual", "learngene", "task", "collective_version", "collective"):
        op.drop_table(table)
