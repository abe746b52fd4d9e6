"""The `deliveries` table: one row per notification to send (the outbox)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Column, Index, Table, Text
from sqlmodel import Field, SQLModel

from approvals.models import UTCDateTime


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # not sent yet, or waiting for its next attempt
    DELIVERED = "delivered"
    FAILED = "failed"  # given up: refused for good, or retried for the whole retry window


class DeliveryRow(SQLModel, table=True):
    """One notification of one event to one target, written with the change that caused it.

    `channel` names the sender (slack, webhook, email, teams); `target` is where
    it goes within that channel (a webhook URL, an address). Rows of one
    (channel, target, request_id) are delivered in `id` order: a row waits while
    an earlier one of the same key is still pending. A worker takes a row by
    setting `lease_until` with a compare-and-set; another worker may take it only
    once the lease has run out (the first one died).
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        Index("ix_deliveries_order", "channel", "target", "request_id", "id"),
        Index("ix_deliveries_created", "created_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # Stable across retries: receivers dedupe on it.
    event_id: str = Field(max_length=64, unique=True)
    channel: str = Field(max_length=32)
    target: str = Field(max_length=2048)
    event_type: str = Field(max_length=64)
    request_id: str = Field(max_length=32, index=True)
    # The channel's payload model as JSON text (approvals.outbox.core.Delivery.parse).
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default=DeliveryStatus.PENDING, max_length=16)
    attempts: int = 0
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    next_attempt_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    lease_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    last_attempt_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    delivered_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


DELIVERIES: Table = DeliveryRow.__table__  # type: ignore[attr-defined]
