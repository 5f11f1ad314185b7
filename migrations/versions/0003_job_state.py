"""Job state: fencing and timing columns on job, scoped idempotency keys, per-collective grow leases.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

- job.revision: raised by every change of the job (the id of its server-sent events, for Last-Event-ID);
- job.progress_at: when the job last made progress (the reaper fails a job stalled for too long);
- job.published_at: when its message was last sent (the sweeper re-sends a queued job nobody claimed);
- job.idempotency_scope / request_hash: an Idempotency-Key belongs to one API key and one request body;
- grow_lease: one growth per collective at a time, taken and renewed in short transactions.

Self-contained on purpose (no import of service.models), like 0001.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Batch mode: SQLite cannot ALTER a table in place; on PostgreSQL these are plain ALTER TABLEs.
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("progress_at", TS, nullable=True))
        batch.add_column(sa.Column("published_at", TS, nullable=True))
        batch.add_column(sa.Column("idempotency_scope", sa.String(40), nullable=False, server_default=""))
        batch.add_column(sa.Column("request_hash", sa.String(64), nullable=True))
        batch.drop_constraint("uq_job_idempotency", type_="unique")
        batch.create_unique_constraint("uq_job_idempotency_scoped", ["kind", "idempotency_scope", "idempotency_key"])
    op.create_table(
        "grow_lease",
        sa.Column("collective_id", sa.Integer(), sa.ForeignKey("collective.id"), primary_key=True),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("grow_lease")
    with op.batch_alter_table("job") as batch:
        batch.drop_constraint("uq_job_idempotency_scoped", type_="unique")
        batch.create_unique_constraint("uq_job_idempotency", ["kind", "idempotency_key"])
        for column in ("request_hash", "idempotency_scope", "published_at", "progress_at", "revision"):
            batch.drop_column(column)
