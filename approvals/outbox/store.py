"""Reads and writes of the `deliveries` table, for the worker and for admins.

Taking a row is a compare-and-set on its lease (`lease_until` empty or past),
so of several workers (replicas) exactly one gets it; on PostgreSQL the
candidate rows are read `FOR UPDATE SKIP LOCKED` so that replicas polling at
the same moment pick different rows instead of queueing on each other's locks.
Finishing an attempt is again a compare-and-set on the lease the worker took:
a worker whose lease ran out (it hung past it) cannot overwrite the outcome of
the worker that took the row after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, Select, exists, func, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import col
from sqlmodel import select as select_rows

from approvals.db import WriteScope, read_session
from approvals.models import utcnow
from approvals.outbox.core import Delivery
from approvals.outbox.models import DELIVERIES, DeliveryRow, DeliveryStatus
from approvals.store import Store

_c = DELIVERIES.c
_older = DELIVERIES.alias("older")


def _due(channels: Sequence[str], now: datetime, limit: int, *, lock: bool) -> Select[Any]:
    # An earlier row of the same (channel, target, request) still pending holds this one back.
    waits_for_older = exists().where(
        _older.c.channel == _c.channel,
        _older.c.target == _c.target,
        _older.c.request_id == _c.request_id,
        _older.c.status == DeliveryStatus.PENDING,
        _older.c.id < _c.id,
    )
    query = (
        select(DELIVERIES)
        .where(
            _c.status == DeliveryStatus.PENDING,
            _c.channel.in_(list(channels)),
            _c.next_attempt_at <= now,
            or_(_c.lease_until.is_(None), _c.lease_until < now),
            ~waits_for_older,
        )
        .order_by(_c.next_attempt_at, _c.id)
        .limit(limit)
    )
    return query.with_for_update(skip_locked=True, of=DELIVERIES) if lock else query


def _delivery(row: Row[tuple[object, ...]], attempt: int) -> Delivery:
    m = row._mapping
    return Delivery(
        id=m["id"],
        event_id=m["event_id"],
        channel=m["channel"],
        target=m["target"],
        event_type=m["event_type"],
        request_id=m["request_id"],
        payload=m["payload"],
        attempt=attempt,
        created_at=m["created_at"],
    )


@dataclass
class Claimed:
    """A row this worker holds until `lease_until` (moved on by `renew`)."""

    delivery: Delivery
    lease_until: datetime


def _has_due(engine: Engine, channels: Sequence[str], now: datetime) -> bool:
    """Whether any row is ready (a read: takes no write lock on SQLite)."""
    with read_session(engine) as session:
        found = session.connection().execute(_due(channels, now, 1, lock=False)).first()
        return found is not None


@dataclass(frozen=True)
class Finished:
    """The outcome of one attempt, to be recorded."""

    claimed: Claimed
    status: DeliveryStatus
    error: str | None = None
    next_attempt_at: datetime | None = None


def settle_and_claim(
    engine: Engine,
    finished: Sequence[Finished],
    channels: Sequence[str],
    limit: int,
    lease_seconds: float,
) -> tuple[list[bool], list[Claimed]]:
    """Record `finished` outcomes (releasing their leases), then take up to `limit` ready
    rows for `lease_seconds`, in one transaction: a row whose predecessor was just
    recorded is taken at once. Returns, per outcome, whether its lease still held, and
    the rows taken (each attempt is counted now)."""
    now = utcnow()
    lock = engine.dialect.name == "postgresql"
    claiming = limit > 0 and bool(channels)
    # On SQLite a write session waits for the file's one write turn: look first.
    if not finished and (not claiming or (not lock and not _has_due(engine, channels, now))):
        return [], []
    lease_until = now + timedelta(seconds=lease_seconds)

    def write(scope: WriteScope) -> tuple[list[bool], list[Claimed]]:
        claimed: list[Claimed] = []
        conn = scope.connection()
        kept = [_record(conn, outcome, now) for outcome in finished]
        rows = conn.execute(_due(channels, now, limit, lock=lock)).all() if claiming else []
        for row in rows:
            taken = conn.execute(
                update(DELIVERIES)
                .where(
                    _c.id == row.id,
                    _c.status == DeliveryStatus.PENDING,
                    or_(_c.lease_until.is_(None), _c.lease_until < now),
                )
                .values(lease_until=lease_until, attempts=_c.attempts + 1, last_attempt_at=now)
            )
            if taken.rowcount == 1:
                claimed.append(Claimed(_delivery(row, row.attempts + 1), lease_until))
        scope.commit()
        return kept, claimed

    return Store(engine).run_now(write)


def _record(conn: Connection, outcome: Finished, now: datetime) -> bool:
    values: dict[str, object] = {"status": outcome.status, "lease_until": None}
    if outcome.status == DeliveryStatus.DELIVERED:
        values["delivered_at"] = now
    else:  # a delivered row keeps the error of its last failed attempt, for the record
        values["last_error"] = outcome.error
    if outcome.next_attempt_at is not None:
        values["next_attempt_at"] = outcome.next_attempt_at
    claimed = outcome.claimed
    result = conn.execute(
        update(DELIVERIES)
        .where(_c.id == claimed.delivery.id, _c.lease_until == claimed.lease_until)
        .values(**values)
    )
    return bool(result.rowcount == 1)


def renew(engine: Engine, claimed: Claimed, lease_seconds: float) -> bool:
    """Hold the row `lease_seconds` longer; False if the lease was lost meanwhile."""
    until = utcnow() + timedelta(seconds=lease_seconds)

    def write(scope: WriteScope) -> bool:
        result = scope.connection().execute(
            update(DELIVERIES)
            .where(_c.id == claimed.delivery.id, _c.lease_until == claimed.lease_until)
            .values(lease_until=until)
        )
        scope.commit()
        return bool(result.rowcount == 1)

    if not Store(engine).run_now(write):
        return False
    claimed.lease_until = until
    return True


def listing(
    engine: Engine,
    *,
    status: DeliveryStatus | None = None,
    channel: str | None = None,
    request_id: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[DeliveryRow]:
    """Rows newest first, filtered; `before_id` pages on."""
    query = select_rows(DeliveryRow).order_by(col(DeliveryRow.id).desc()).limit(limit)
    if status is not None:
        query = query.where(DeliveryRow.status == status)
    if channel is not None:
        query = query.where(DeliveryRow.channel == channel)
    if request_id is not None:
        query = query.where(DeliveryRow.request_id == request_id)
    if before_id is not None:
        query = query.where(col(DeliveryRow.id) < before_id)
    with read_session(engine) as session:
        return list(session.exec(query).all())


def counts(engine: Engine) -> dict[tuple[str, str], int]:
    """How many rows there are per (channel, status)."""
    with read_session(engine) as session:
        rows = session.connection().execute(
            select(_c.channel, _c.status, func.count()).group_by(_c.channel, _c.status)
        )
        return {(channel, status): int(n) for channel, status, n in rows}
