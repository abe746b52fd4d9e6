"""GET /api/v1/deliveries: the outbox as admins see it (what went out, what failed).

Admins only: a row names where notifications go (webhook URLs) and why they
failed. Newest first; `status=failed` lists what was given up on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from approvals.api.deps import EngineDep, Principal, require_role
from approvals.outbox import DeliveryRow, DeliveryStatus
from approvals.outbox import store as outbox_store

router = APIRouter(prefix="/api/v1", tags=["deliveries"])

AdminDep = Annotated[Principal, Depends(require_role())]


class DeliveryPublic(BaseModel):
    """One notification of one event to one target, and how its delivery went."""

    id: int
    event_id: str
    channel: str
    target: str
    event_type: str
    request_id: str
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_error: str | None
    delivered_at: datetime | None

    @classmethod
    def of(cls, row: DeliveryRow) -> DeliveryPublic:
        assert row.id is not None
        return cls(
            id=row.id,
            event_id=row.event_id,
            channel=row.channel,
            target=row.target,
            event_type=row.event_type,
            request_id=row.request_id,
            status=DeliveryStatus(row.status),
            attempts=row.attempts,
            created_at=row.created_at,
            # Only a pending row has a next attempt.
            next_attempt_at=row.next_attempt_at if row.status == DeliveryStatus.PENDING else None,
            last_attempt_at=row.last_attempt_at,
            last_error=row.last_error,
            delivered_at=row.delivered_at,
        )


class DeliveryPage(BaseModel):
    items: list[DeliveryPublic]
    # Pass as `cursor` for the next (older) page; null on the last one.
    next_cursor: str | None


@router.get("/deliveries")
async def list_deliveries(
    engine: EngineDep,
    _: AdminDep,
    status: DeliveryStatus | None = None,
    channel: Annotated[str | None, Query(max_length=32)] = None,
    request_id: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    # 18 digits: a longer number overflows the database's 64-bit integer (a 500, not a 422).
    cursor: Annotated[str | None, Query(max_length=18, pattern=r"^[0-9]+$")] = None,
) -> DeliveryPage:
    """Notifications newest first, filtered by status, channel and request (admins only)."""
    rows = await run_in_threadpool(
        outbox_store.listing,
        engine,
        status=status,
        channel=channel,
        request_id=request_id,
        limit=limit + 1,
        before_id=int(cursor) if cursor is not None else None,
    )
    items = [DeliveryPublic.of(row) for row in rows[:limit]]
    more = len(rows) > limit
    return DeliveryPage(items=items, next_cursor=str(items[-1].id) if more else None)
