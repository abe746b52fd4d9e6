"""requests, decisions and api tokens

Revision ID: 0001
Revises:
Create Date: 2026-11-25 01:17:29.732567
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import approvals.models

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("prefix", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("created_at", approvals.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", approvals.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_tokens_name"), ["name"], unique=False)

    op.create_table(
        "approval_requests",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("tool", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("server", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("caller", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("session_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("arguments", sa.JSON(), nullable=False),
        sa.Column("arguments_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("binding_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("policy_key", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("approver_group", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("approvers", sa.JSON(), nullable=False),
        sa.Column("quorum", sa.Integer(), nullable=False),
        sa.Column("approvals_count", sa.Integer(), nullable=False),
        sa.Column("on_timeout", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("created_at", approvals.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", approvals.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_at", approvals.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("decision_comment", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("decision_channel", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("claimed_at", approvals.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome_is_error", sa.Boolean(), nullable=True),
        sa.Column("outcome_summary", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("outcome_at", approvals.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("created_by", "idempotency_key", name="uq_requests_idempotency"),
    )
    with op.batch_alter_table("approval_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_approval_requests_binding_hash"), ["binding_hash"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_approval_requests_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_approval_requests_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_approval_requests_tool"), ["tool"], unique=False)
        batch_op.create_index("ix_requests_created", ["created_at", "id"], unique=False)

    op.create_table(
        "approval_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("approver", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("decision", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("comment", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("created_at", approvals.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["approval_requests.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id", "approver", name="uq_decisions_one_vote"),
    )
    with op.batch_alter_table("approval_decisions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_approval_decisions_request_id"), ["request_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("approval_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_approval_decisions_request_id"))

    op.drop_table("approval_decisions")
    with op.batch_alter_table("approval_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_requests_created")
        batch_op.drop_index(batch_op.f("ix_approval_requests_tool"))
        batch_op.drop_index(batch_op.f("ix_approval_requests_status"))
        batch_op.drop_index(batch_op.f("ix_approval_requests_expires_at"))
        batch_op.drop_index(batch_op.f("ix_approval_requests_binding_hash"))

    op.drop_table("approval_requests")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_tokens_name"))

    op.drop_table("api_tokens")
