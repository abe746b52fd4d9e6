"""audit events: the approved_arguments_hash of facts about an edited request

Revision ID: 0010_i18c
Revises: 0009_i18b
Create Date: 2026-11-29 12:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_i18c"
down_revision: str | None = "0009_i18b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable and hashed only when set: existing events and their chain are unchanged.
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("approved_arguments_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("approved_arguments_hash")
