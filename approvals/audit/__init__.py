"""The append-only, hash-chained audit trail.

- `record_event` / `append_events`: called by `approvals.lifecycle` inside the
  transaction of the change they record.
- `timeline(session, request_id)`: the events of one request, oldest first.
- `verify_chain(engine)`: walk the chain; the first altered, removed or inserted event.
- `approvals.audit.export`: streamed CSV / JSONL / JSON; `approvals.audit.api`: routes.
"""

from __future__ import annotations

from approvals.audit.chain import Problem, Verification, verify_chain
from approvals.audit.models import AuditChainHead, AuditEvent
from approvals.audit.record import (
    CHANNELS,
    EVENT_TYPES,
    GATEWAY_EVENT_TYPES,
    AuditEventDraft,
    append_events,
    record_event,
    timeline,
)

__all__ = [
    "CHANNELS",
    "EVENT_TYPES",
    "GATEWAY_EVENT_TYPES",
    "AuditChainHead",
    "AuditEvent",
    "AuditEventDraft",
    "Problem",
    "Verification",
    "append_events",
    "record_event",
    "timeline",
    "verify_chain",
]
