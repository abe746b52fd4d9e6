"""Audit routes (prefix /api/v1): gateways report the calls they settled; auditors export.

There is deliberately no route that changes or removes an audit event.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from approvals import lifecycle
from approvals.api.deps import (
    EngineDep,
    GatewayDep,
    MetricsDep,
    Principal,
    StoreDep,
    require_role,
)
from approvals.api.errors import ApiError
from approvals.audit.export import MEDIA_TYPES, ExportFilter, InvalidTime, parse_time, stream_export
from approvals.audit.record import EVENT_TYPES
from approvals.audit.schemas import GatewayFactBatch, RecordedFacts
from approvals.models import Role

router = APIRouter(prefix="/api/v1/audit")

AuditorDep = Annotated[Principal, Depends(require_role(Role.AUDITOR))]


@router.post("/events", status_code=201)
async def record_gateway_events(
    body: GatewayFactBatch, store: StoreDep, principal: GatewayDep, metrics: MetricsDep
) -> RecordedFacts:
    """Record calls the gateway settled itself: denied, hidden, rate limited, or allowed."""
    events = await store.run(
        lambda session: lifecycle.record_gateway_facts(session, body.events, gateway=principal.name)
    )
    for fact in body.events:
        metrics.gateway_fact(fact.type)
    return RecordedFacts(recorded=len(events), first_id=events[0].id, last_id=events[-1].id)


def _time(name: str, value: str | None) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return parse_time(value, name)
    except InvalidTime as exc:
        raise ApiError(422, "invalid_time", str(exc)) from None


def _types(values: list[str] | None) -> tuple[str, ...]:
    values = values or []
    types = tuple(dict.fromkeys(t.strip() for v in values for t in v.split(",") if t.strip()))
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise ApiError(
            422,
            "invalid_type",
            f"unknown event type {unknown[0]!r}; known types: {', '.join(EVENT_TYPES)}",
        )
    return types


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The audit events, streamed in the asked format",
            "content": {media.split(";")[0]: {} for media in MEDIA_TYPES.values()},
        }
    },
)
def export(
    engine: EngineDep,
    _: AuditorDep,
    format: Literal["csv", "jsonl", "json"] = "csv",
    since: Annotated[str | None, Query(max_length=64)] = None,
    until: Annotated[str | None, Query(max_length=64)] = None,
    tool: Annotated[str | None, Query(max_length=255)] = None,
    actor: Annotated[str | None, Query(max_length=255)] = None,
    type: Annotated[list[str] | None, Query()] = None,
) -> StreamingResponse:
    """Stream the audit events (oldest first) as CSV, JSON Lines or a JSON array.

    `since` is inclusive and `until` exclusive (ISO 8601; UTC when no offset is
    given); `tool`, `actor` and `type` match exactly (`type` may repeat or be a
    comma-separated list).
    """
    flt = ExportFilter(
        since=_time("since", since),
        until=_time("until", until),
        tool=tool or None,
        actor=actor or None,
        types=_types(type),
    )
    if flt.since is not None and flt.until is not None and flt.since >= flt.until:
        raise ApiError(422, "invalid_time", "since must be before until")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        stream_export(engine, flt, format),
        media_type=MEDIA_TYPES[format],
        headers={
            "Content-Disposition": f'attachment; filename="signoff-audit-{stamp}.{format}"',
            "Cache-Control": "no-store",
        },
    )
