"""Appending events to the audit chain, inside the caller's transaction.

Lifecycle functions call `record_event` (or `append_events`) just before they
commit, in the same transaction as the state change: the fact and the change
land together or not at all.

How concurrent appenders are kept from forking the chain: every append first
reads the one row of `audit_chain_head` with `SELECT ... FOR UPDATE`, takes the
next id and the previous hash from it, inserts the events and moves the head.
On PostgreSQL the row lock makes a second appender wait until the first one
commits (or rolls back), so it reads the new head; ids are assigned from the
head rather than a sequence, so they are contiguous and commit order is id
order. On SQLite `FOR UPDATE` is not rendered, and it is not needed: every
write transaction starts with `BEGIN IMMEDIATE` (approvals/db.py), which already
lets only one writer in at a time. A lock on "the last event" instead would not
work for the very first event and would need a gap-free index scan; the head row
works the same on both databases and also lets `verify` detect a truncated tail.

On PostgreSQL every writing transaction takes the head lock first (each batch
of the store, approvals/store.py, with `take_head`; a setup session of
`db.session_scope` with `lock_head_first`), before any other row lock: one lock
order, so no deadlock cycle between a batch that holds the head and another
transaction that holds a request row. A batch of many units holds it once,
which is what keeps it from being one hot row every transaction queues on; it
also keeps the head in memory
(`HeldHead`) while its units append, and writes it back once before COMMIT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from approvals.audit.chain import HASHED_FIELDS, canonical_time, compute_hash
from approvals.audit.models import GENESIS_HASH, HEAD_ROW_ID, AuditChainHead, AuditEvent
from approvals.db import WriteScope
from approvals.models import utcnow
from gateway_plugin.policy import canonical_json

# Every event type the service records.
REQUEST_CREATED = "request.created"
REQUEST_NOTIFIED = "request.notified"
REQUEST_REMINDED = "request.reminded"
REQUEST_ESCALATED = "request.escalated"
DECISION_RECORDED = "decision.recorded"
QUORUM_REACHED = "quorum.reached"
REQUEST_APPROVED = "request.approved"
REQUEST_REJECTED = "request.rejected"
REQUEST_EXPIRED = "request.expired"
REQUEST_CANCELLED = "request.cancelled"
CALL_FORWARDED = "call.forwarded"
CALL_SUCCEEDED = "call.succeeded"
CALL_FAILED = "call.failed"
POLICY_DENIED = "policy.denied"
POLICY_RATE_LIMITED = "policy.rate_limited"
CALL_ALLOWED = "call.allowed"
# The person at the client answered a `confirm` rule (never an approver's vote).
CALL_CONFIRMED = "call.confirmed"
CALL_DECLINED = "call.declined"
ARGUMENTS_EDITED = "arguments.edited"
GRANT_CREATED = "grant.created"
GRANT_REVOKED = "grant.revoked"
GRANT_USED = "grant.used"

EVENT_TYPES: tuple[str, ...] = (
    REQUEST_CREATED,
    REQUEST_NOTIFIED,
    REQUEST_REMINDED,
    REQUEST_ESCALATED,
    DECISION_RECORDED,
    QUORUM_REACHED,
    REQUEST_APPROVED,
    REQUEST_REJECTED,
    REQUEST_EXPIRED,
    REQUEST_CANCELLED,
    CALL_FORWARDED,
    CALL_SUCCEEDED,
    CALL_FAILED,
    POLICY_DENIED,
    POLICY_RATE_LIMITED,
    CALL_ALLOWED,
    CALL_CONFIRMED,
    CALL_DECLINED,
    ARGUMENTS_EDITED,
    GRANT_CREATED,
    GRANT_REVOKED,
    GRANT_USED,
)
# The facts a gateway reports itself (POST /api/v1/audit/events).
GATEWAY_EVENT_TYPES: tuple[str, ...] = (
    POLICY_DENIED,
    POLICY_RATE_LIMITED,
    CALL_ALLOWED,
    CALL_CONFIRMED,
    CALL_DECLINED,
)
CHANNELS: tuple[str, ...] = (
    "api", "dashboard", "slack", "cli", "sweeper", "gateway", "email", "teams",
)  # fmt: skip


@dataclass
class AuditEventDraft:
    """An event before it is chained: everything but id, prev_hash and hash."""

    type: str
    actor: str
    channel: str
    request_id: str | None = None
    tool: str | None = None
    server: str | None = None
    caller: str | None = None
    outcome: str | None = None
    comment: str | None = None
    # Already redacted; stored as canonical JSON text.
    arguments: Mapping[str, Any] | None = None
    policy_key: str | None = None
    time: datetime = field(default_factory=utcnow)
    # The canonical hash of the unmasked arguments, when the fact is about one exact call.
    arguments_hash: str | None = None
    # The hash of the arguments an approver edited the call to (an edited request's facts).
    approved_arguments_hash: str | None = None


def _table() -> Any:
    return AuditEvent.__table__  # type: ignore[attr-defined]


def _head_table() -> Any:
    return AuditChainHead.__table__  # type: ignore[attr-defined]


# Every write appends, so the statements are built once: building one costs
# more than SQLite takes to run it.
_READ_HEAD_FOR_UPDATE = (
    select(_head_table().c.last_id, _head_table().c.last_hash)
    .where(_head_table().c.id == HEAD_ROW_ID)
    .with_for_update()
)
_INSERT_EVENTS = insert(_table())
_MOVE_HEAD = (
    update(_head_table())
    .where(_head_table().c.id == HEAD_ROW_ID)
    .values(last_id=bindparam("new_last_id"), last_hash=bindparam("new_last_hash"))
)


_TAKE_HEAD = select(_head_table().c.id).where(_head_table().c.id == HEAD_ROW_ID).with_for_update()


def lock_head_first(conn: Connection) -> None:
    """Lock the chain's head at the start of a PostgreSQL write session's transaction."""
    conn.execute(_TAKE_HEAD)


@dataclass
class HeldHead:
    """The chain's head while one transaction holds it for many units (a batch).

    Units append against it in memory (`append_rows` finds it in the scope's
    `info`); `store_head` writes it back once, before the batch commits. A unit
    rolled back to its savepoint puts back the head it started from (`restore`)."""

    last_id: int
    last_hash: str
    moved: bool = False

    def mark(self) -> tuple[int, str]:
        return self.last_id, self.last_hash

    def restore(self, mark: tuple[int, str]) -> None:
        self.last_id, self.last_hash = mark


HELD_HEAD_KEY = "signoff_held_head"


def take_head(conn: Connection) -> HeldHead:
    """Lock (on PostgreSQL: wait for) and read the head for a batch's transaction."""
    last_id, last_hash = _lock_head(conn)
    return HeldHead(last_id, last_hash)


def store_head(conn: Connection, held: HeldHead) -> None:
    """Write the head back after a batch's units appended (before its COMMIT)."""
    if held.moved:
        conn.execute(_MOVE_HEAD, {"new_last_id": held.last_id, "new_last_hash": held.last_hash})


def _lock_head(conn: Connection) -> tuple[int, str]:
    row = conn.execute(_READ_HEAD_FOR_UPDATE).first()
    if row is not None:
        return int(row[0]), str(row[1])
    # Migrations create the row; a database built another way gets it on first use.
    head = _head_table()
    conn.execute(insert(head).values(id=HEAD_ROW_ID, last_id=0, last_hash=GENESIS_HASH))
    return 0, GENESIS_HASH


def append_events(session: WriteScope, drafts: Sequence[AuditEventDraft]) -> list[AuditEvent]:
    """Chain and insert `drafts` in order, in the session's open transaction (no commit)."""
    return [AuditEvent(**row) for row in append_rows(session, drafts)]


def append_rows(session: WriteScope, drafts: Sequence[AuditEventDraft]) -> list[dict[str, Any]]:
    """`append_events` for callers that need no objects back: the inserted rows as dicts."""
    if not drafts:
        return []
    # Core on the session's connection: the ORM adds nothing to these inserts.
    conn = session.connection()
    held: HeldHead | None = session.info.get(HELD_HEAD_KEY)
    last_id, prev_hash = _lock_head(conn) if held is None else held.mark()
    rows: list[dict[str, Any]] = []
    for draft in drafts:
        if draft.time.tzinfo is None:
            raise ValueError("audit event times must be timezone-aware")
        # Fixed vocabularies: exports rely on these never needing quoting or escaping.
        if draft.type not in EVENT_TYPES:
            raise ValueError(f"unknown audit event type {draft.type!r}")
        if draft.channel not in CHANNELS:
            raise ValueError(f"unknown audit channel {draft.channel!r}; use one of {CHANNELS}")
        last_id += 1
        arguments = None if draft.arguments is None else canonical_json(draft.arguments)
        # Empty text is stored as NULL, so every export format reads back the same value.
        values: list[Any] = [
            last_id,
            canonical_time(draft.time),
            draft.type,
            draft.request_id or None,
            draft.tool or None,
            draft.server or None,
            draft.caller or None,
            draft.actor,
            draft.channel,
            draft.outcome or None,
            draft.comment or None,
            arguments,
            draft.policy_key or None,
            prev_hash,
        ]
        digest = compute_hash(values, draft.arguments_hash, draft.approved_arguments_hash)
        row = dict(zip(HASHED_FIELDS, values, strict=True))
        row["time"] = draft.time
        row["hash"] = digest
        row["arguments_hash"] = draft.arguments_hash
        row["approved_arguments_hash"] = draft.approved_arguments_hash
        rows.append(row)
        prev_hash = digest
    conn.execute(_INSERT_EVENTS, rows)
    if held is None:
        conn.execute(_MOVE_HEAD, {"new_last_id": last_id, "new_last_hash": prev_hash})
    else:
        held.last_id, held.last_hash, held.moved = last_id, prev_hash, True
    return rows


def record_event(
    session: WriteScope,
    type: str,
    *,
    actor: str,
    channel: str,
    request_id: str | None = None,
    tool: str | None = None,
    server: str | None = None,
    caller: str | None = None,
    outcome: str | None = None,
    comment: str | None = None,
    arguments: Mapping[str, Any] | None = None,
    policy_key: str | None = None,
    time: datetime | None = None,
) -> AuditEvent:
    """Append one event in the session's transaction; the caller commits."""
    draft = AuditEventDraft(
        type=type,
        actor=actor,
        channel=channel,
        request_id=request_id,
        tool=tool,
        server=server,
        caller=caller,
        outcome=outcome,
        comment=comment,
        arguments=arguments,
        policy_key=policy_key,
        time=time or utcnow(),
    )
    return append_events(session, [draft])[0]


def timeline(session: Session, request_id: str) -> list[AuditEvent]:
    """Every audit event about one request, oldest first (for the dashboard's history)."""
    return list(
        session.scalars(
            select(AuditEvent)
            .where(AuditEvent.request_id == request_id)  # type: ignore[arg-type]
            .order_by(AuditEvent.id)  # type: ignore[arg-type]
        ).all()
    )
