"""Where work runs: the device a worker announces, and the device each job ran on.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

Self-contained on purpose (no import of service.models), like 0001. Both columns are nullable: rows from
before this revision (and workers of an older release) have no device.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEVICE = sa.String(200)  # `cuda:0 NVIDIA H200 (+7 more)`: cut to 200 by workers/context.py


def upgrade() -> None:
    with op.batch_alter_table("worker") as batch:
        batch.add_column(sa.Column("device", DEVICE, nullable=True))
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("device", DEVICE, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.drop_column("device")
    with op.batch_alter_table("worker") as batch:
        batch.drop_column("device")
