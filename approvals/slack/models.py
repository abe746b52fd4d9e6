"""Where each request's Slack card lives, so every later change can update it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from approvals.models import UTCDateTime


class SlackMessage(SQLModel, table=True):
    """The card posted for one request: one row per request, whatever the replica count.

    A replica claims the row (ts still null) before it posts, so a request is
    announced once even when several replicas hear of it; `ts` is set once the
    post went out, `rendered_version` is the request version the card shows, and
    `replies_posted` counts the thread replies (votes, then an ending) posted so far.
    Replicas that all hear an event advance these with compare-and-set updates, so
    each reply is posted once.
    """

    __tablename__ = "slack_messages"

    request_id: str = Field(primary_key=True, foreign_key="approval_requests.id", max_length=32)
    channel: str = Field(max_length=64)
    ts: str | None = Field(default=None, max_length=32)
    rendered_version: int = -1
    replies_posted: int = 0
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
