"""edits and grants: approved (edited) arguments on requests, and time-boxed grants

Revision ID: 0006_i18
Revises: 0005_i17
Create Date: 2026-11-29 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import approvals.models

revision: str = "0006_i18"
down_revision: str | None = "0005_i17"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    # Batch mode: SQLite rebuilds the table; existing requests stay editable and unedited.
    with op.batch_alter_table("approval_requests") as batch:
        batch.add_column(
            sa.Column("editable", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch.add_column(sa.Column("approved_arguments", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("approved_arguments_hash", _text(64), nullable=True))
        batch.add_column(sa.Column("edited_by", _text(255), nullable=True))
    op.create_table(
        "grants",
        sa.Column("id", _text(32), nullable=False),
        sa.Column("tool", _text(255), nullable=False),
        sa.Column("server", _text(255), nullable=True),
        sa.Column("caller", _text(255), nullable=False),
        sa.Column("arguments", sa.JSON(), nullable=True),
        sa.Column("arguments_hash", _text(64), nullable=True),
        sa.Column("policy_key", _text(255), nullable=True),
        sa.Column("created_by", _text(255), nullable=False),
        sa.Column("created_at", approvals.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", approvals.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("revoked_at", approvals.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", _text(255), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_grants_match", "grants", ["tool", "caller"])
    op.create_index("ix_grants_expires_at", "grants", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_grants_expires_at", table_name="grants")
    op.drop_index("ix_grants_match", table_name="grants")
    op.drop_table("grants")
    with op.batch_alter_table("approval_requests") as batch:
        batch.drop_column("edited_by")
        batch.drop_column("approved_arguments_hash")
        batch.drop_column("approved_arguments")
        batch.drop_column("editable")
