"""deliveries: the outbox of notifications (Slack, webhooks, email, Teams)

Revision ID: 0007_i20
Revises: 0006_i18
Create Date: 2026-11-29 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import approvals.models

revision: str = "0007_i20"
down_revision: str | None = "0006_i18"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    utc = approvals.models.UTCDateTime(timezone=True)
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=False),
        sa.Column("event_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("next_attempt_at", utc, nullable=False),
        sa.Column("lease_until", utc, nullable=True),
        sa.Column("last_attempt_at", utc, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", utc, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["status", "next_attempt_at"])
    # Serves the "an earlier row of the same key is still pending" check of every claim.
    op.create_index("ix_deliveries_order", "deliveries", ["channel", "target", "request_id", "id"])
    op.create_index("ix_deliveries_created", "deliveries", ["created_at", "id"])
    op.create_index("ix_deliveries_request_id", "deliveries", ["request_id"])


def downgrade() -> None:
    op.drop_table("deliveries")
