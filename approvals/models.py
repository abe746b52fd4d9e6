"""Database tables: approval requests, the decisions on them, and API tokens."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

# Defined apart so that the CLI's parsers can name the roles without loading SQLModel.
from approvals.roles import Role as Role


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; always hands back timezone-aware datetimes, also on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        # SQLite has no time zones: store naive UTC so that string order is time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc_column(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class RequestStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset(
    {
        RequestStatus.APPROVED,
        RequestStatus.REJECTED,
        RequestStatus.EXPIRED,
        RequestStatus.CANCELLED,
    }
)


class ApprovalRequest(SQLModel, table=True):
    """A suspended tool call waiting for (or past) a human decision; read as a frozen
    `request_store.RequestRecord` everywhere but in queries."""

    __tablename__ = "approval_requests"
    __table_args__ = (
        UniqueConstraint("created_by", "idempotency_key", name="uq_requests_idempotency"),
        Index("ix_requests_created", "created_at", "id"),
    )

    id: str = Field(primary_key=True, max_length=32)
    status: str = Field(default=RequestStatus.PENDING, index=True, max_length=16)
    tool: str = Field(index=True, max_length=255)
    server: str = Field(default="", max_length=255)
    caller: str = Field(max_length=255)
    session_id: str | None = Field(default=None, max_length=255)
    # Arguments as shown to people: secret-looking and `redact`ed values masked.
    arguments: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    arguments_hash: str = Field(max_length=64)
    # Hash of (caller, server, tool, arguments_hash): an approval authorises only this call.
    binding_hash: str = Field(index=True, max_length=64)
    policy_key: str | None = Field(default=None, max_length=255)
    reason: str | None = Field(default=None)
    approver_group: str | None = Field(default=None, max_length=255)
    approvers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    quorum: int = 1
    approvals_count: int = 0
    on_timeout: str = Field(default="deny", max_length=8)
    created_by: str = Field(max_length=255)
    idempotency_key: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    decided_at: datetime | None = _utc_column()
    decided_by: str | None = Field(default=None, max_length=255)
    decision_comment: str | None = Field(default=None)
    decision_channel: str | None = Field(default=None, max_length=32)
    # Set once when the gateway runs the approved call: an approval is used once.
    claimed_at: datetime | None = _utc_column()
    outcome_is_error: bool | None = Field(default=None)
    outcome_summary: str | None = Field(default=None)
    outcome_at: datetime | None = _utc_column()
    # False when the policy's rule says `"editable": false`: approve or reject as made.
    editable: bool = True
    # Set when an approver changed the arguments before approving: what then runs
    # (secret values still masked: the gateway fills them in from the call as made).
    approved_arguments: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True)
    )
    approved_arguments_hash: str | None = Field(default=None, max_length=64)
    edited_by: str | None = Field(default=None, max_length=255)
    # What the rule's read-only preview call showed ({"status", "text", "error"}, masked and
    # capped), or None. Display only: never part of what an approval is bound to.
    preview: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # Bumped on every state change; updates compare-and-set on it.
    version: int = 0
    # Reminders and escalation, from the policy when the request was made (like its
    # approvers): [{"after_seconds": 30.0, "group": "oncall", "members": [...]}], in
    # time order. Members of a step may decide once its time has come
    # (approvals.lifecycle.may_decide); the sweeper announces each step once.
    escalations: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    # How many steps have been announced, and when the next one is due (None: no more).
    escalated: int = 0
    next_escalation_at: datetime | None = _utc_column(index=True)
    remind_every_seconds: float | None = Field(default=None)
    # When the approvers are reminded next (None: never again); moved on by the
    # sweeper with a compare-and-set of its own, so a reminder is no state change.
    next_reminder_at: datetime | None = _utc_column(index=True)


class Vote(SQLModel, table=True):
    """One approver's vote on a request (the table and the API keep the name "decisions")."""

    __tablename__ = "approval_decisions"
    __table_args__ = (UniqueConstraint("request_id", "approver", name="uq_decisions_one_vote"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(foreign_key="approval_requests.id", index=True, max_length=32)
    approver: str = Field(max_length=255)
    decision: str = Field(max_length=8)
    comment: str | None = Field(default=None)
    channel: str = Field(default="api", max_length=32)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class Grant(SQLModel, table=True):
    """A time-boxed permission: calls of one tool by one caller run without a hold."""

    __tablename__ = "grants"
    __table_args__ = (Index("ix_grants_match", "tool", "caller"),)

    id: str = Field(primary_key=True, max_length=32)
    tool: str = Field(max_length=255)
    # None: the tool on any server.
    server: str | None = Field(default=None, max_length=255)
    caller: str = Field(max_length=255)
    # None: any arguments; else only the call whose canonical hash this is. The
    # arguments are kept for people to read, with secret values masked.
    arguments: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    arguments_hash: str | None = Field(default=None, max_length=64)
    policy_key: str | None = Field(default=None, max_length=255)
    created_by: str = Field(max_length=255)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    # None: as many calls as come before it expires.
    max_uses: int | None = Field(default=None)
    # Counted by the service with a compare-and-set, so racing gateways never exceed max_uses.
    uses: int = 0
    revoked_at: datetime | None = _utc_column()
    revoked_by: str | None = Field(default=None, max_length=255)


class ApiToken(SQLModel, table=True):
    """A bearer token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, max_length=255)
    role: str = Field(max_length=16)
    token_hash: str = Field(unique=True, max_length=64)
    # The first characters, so a person can tell tokens apart without the secret.
    prefix: str = Field(max_length=16)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    revoked_at: datetime | None = _utc_column()
    # None: never expires. Past it the token is refused like a revoked one.
    expires_at: datetime | None = _utc_column()
    # When a service last read the token from the table (so, to within the token
    # cache's lifetime): written in the background, never per request
    # (approvals/token_usage.py).
    last_used_at: datetime | None = _utc_column()
