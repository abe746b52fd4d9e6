"""audit events: the arguments_hash of facts about one exact call (call.confirmed / declined)

Revision ID: 0005_i17
Revises: 0004
Create Date: 2026-11-29 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_i17"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable and hashed only when set: existing events and their chain are unchanged.
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("arguments_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("arguments_hash")
