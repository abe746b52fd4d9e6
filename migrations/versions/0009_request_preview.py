"""request preview: what a rule's read-only preview call showed approvers

Revision ID: 0009_i18b
Revises: 0008_i20b
Create Date: 2026-11-29 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_i18b"
down_revision: str | None = "0008_i20b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: requests queued before previews existed simply have none.
    with op.batch_alter_table("approval_requests") as batch:
        batch.add_column(sa.Column("preview", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("approval_requests") as batch:
        batch.drop_column("preview")
