"""API keys: hashed tokens with a scope (read or write).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Self-contained on purpose (no import of service.models), like 0001.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
    )
    # Batch mode: SQLite cannot ALTER a table in place; on PostgreSQL this is a plain CREATE INDEX.
    with op.batch_alter_table("api_key") as batch:
        batch.create_index("ix_api_key_key_hash", ["key_hash"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("api_key") as batch:
        batch.drop_index("ix_api_key_key_hash")
    op.drop_table("api_key")
