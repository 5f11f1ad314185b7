"""Learngene aliases: human-readable names (`champion`) pointing at a learngene, and every move recorded.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

Self-contained on purpose (no import of service.models), like 0001.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "learngene_alias",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("learngene_id", sa.Integer(), sa.ForeignKey("learngene.id"), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "learngene_alias_event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("from_learngene_id", sa.Integer(), nullable=True),
        sa.Column("to_learngene_id", sa.Integer(), nullable=True),
        sa.Column("api_key_id", sa.Integer(), nullable=True),
        sa.Column("at", TS, nullable=False),
    )
    with op.batch_alter_table("learngene_alias") as batch:
        batch.create_index("ix_learngene_alias_learngene_id", ["learngene_id"])
    with op.batch_alter_table("learngene_alias_event") as batch:
        batch.create_index("ix_learngene_alias_event_name", ["name"])


def downgrade() -> None:
    op.drop_table("learngene_alias_event")
    op.drop_table("learngene_alias")
