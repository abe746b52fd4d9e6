"""reminders and escalation: each request keeps its steps and when the next one is due

Revision ID: 0008_i20b
Revises: 0007_i20
Create Date: 2026-11-29 09:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import approvals.models

revision: str = "0008_i20b"
down_revision: str | None = "0007_i20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    utc = approvals.models.UTCDateTime(timezone=True)
    # Batch mode: SQLite rebuilds the table. Existing requests neither remind nor escalate.
    with op.batch_alter_table("approval_requests") as batch:
        batch.add_column(
            sa.Column("escalations", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
        batch.add_column(
            sa.Column("escalated", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(sa.Column("next_escalation_at", utc, nullable=True))
        batch.add_column(sa.Column("remind_every_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("next_reminder_at", utc, nullable=True))
        batch.create_index(
            "ix_approval_requests_next_escalation_at", ["next_escalation_at"], unique=False
        )
        batch.create_index(
            "ix_approval_requests_next_reminder_at", ["next_reminder_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("approval_requests") as batch:
        batch.drop_index("ix_approval_requests_next_reminder_at")
        batch.drop_index("ix_approval_requests_next_escalation_at")
        batch.drop_column("next_reminder_at")
        batch.drop_column("remind_every_seconds")
        batch.drop_column("next_escalation_at")
        batch.drop_column("escalated")
        batch.drop_column("escalations")
