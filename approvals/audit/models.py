"""The audit tables: `audit_events` (append-only, hash-chained) and `audit_chain_head`.

Rows of `audit_events` are only ever inserted, by `approvals.audit.record`; no code
path updates or deletes them. `audit_chain_head` is a single row holding the id and
hash of the newest event: appenders lock it to serialise the chain, and `verify`
compares the end of the table with it, so a removed or appended last row shows.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from approvals.models import UTCDateTime

# The prev_hash of the first event.
GENESIS_HASH = "0" * 64
HEAD_ROW_ID = 1


class AuditEvent(SQLModel, table=True):
    """One fact: who did what to which call, through which channel, and with what outcome."""

    __tablename__ = "audit_events"

    # Assigned by the appender (head.last_id + 1), so ids are contiguous and a gap
    # names exactly the events that were removed.
    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    time: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    type: str = Field(index=True, max_length=64)
    request_id: str | None = Field(default=None, index=True, max_length=32)
    tool: str | None = Field(default=None, index=True, max_length=255)
    server: str | None = Field(default=None, max_length=255)
    caller: str | None = Field(default=None, max_length=255)
    # An approver's name, a gateway's token name, or "system".
    actor: str = Field(index=True, max_length=255)
    channel: str = Field(max_length=32)
    outcome: str | None = Field(default=None, max_length=64)
    comment: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Canonical JSON text of the (already redacted) arguments: hashed as stored, so
    # no database JSON type can re-encode it under the hash.
    arguments: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    policy_key: str | None = Field(default=None, max_length=255)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
    # SHA-256 hex of the canonical unmasked arguments, for facts about one exact call
    # (call.confirmed / call.declined); hashed into the chain when set.
    arguments_hash: str | None = Field(default=None, max_length=64)
    # SHA-256 hex of the arguments an approver edited the call to (arguments.edited and
    # the later facts of that request); hashed into the chain when set.
    approved_arguments_hash: str | None = Field(default=None, max_length=64)

    def arguments_dict(self) -> dict[str, Any] | None:
        """The recorded arguments as a dict (None when the event has none)."""
        return None if self.arguments is None else dict(json.loads(self.arguments))


class AuditChainHead(SQLModel, table=True):
    """The one row that records where the chain ends; locked by every append."""

    __tablename__ = "audit_chain_head"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    last_id: int = 0
    last_hash: str = Field(default=GENESIS_HASH, max_length=64)
