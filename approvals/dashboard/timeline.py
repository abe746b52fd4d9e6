"""A request's timeline for the detail page.

When the audit trail (`approvals.audit.timeline`) is available its entries are
shown; otherwise the timeline is rebuilt from the request and its decisions.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from approvals.schemas import RequestPublic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    at: datetime | None
    actor: str
    what: str
    detail: str | None = None


def _audit_source() -> Callable[[Session, str], Iterable[Any]] | None:
    try:
        module = importlib.import_module("approvals.audit")
    except ImportError:
        return None
    source = getattr(module, "timeline", None)
    return source if callable(source) else None


def _field(item: Any, *names: str) -> Any:
    for name in names:
        value = item.get(name) if isinstance(item, dict) else getattr(item, name, None)
        if value is not None:
            return value
    return None


def _from_audit(items: Iterable[Any]) -> list[Entry]:
    entries = []
    for item in items:
        at = _field(item, "time", "at", "created_at")
        if isinstance(at, str):
            try:
                at = datetime.fromisoformat(at)
            except ValueError:
                at = None
        what = str(_field(item, "type", "action", "event") or "")
        outcome = _field(item, "outcome")
        if outcome:
            what += f": {outcome}"
        channel = _field(item, "channel")
        if channel:
            what += f" (via {channel})"
        detail = _field(item, "comment", "detail", "summary")
        entries.append(
            Entry(
                at=at if isinstance(at, datetime) else None,
                actor=str(_field(item, "actor", "by") or ""),
                what=what,
                detail=None if detail is None else str(detail),
            )
        )
    return entries


def _from_request(r: RequestPublic) -> list[Entry]:
    entries = [
        Entry(r.created_at, r.caller, "asked", f"{r.tool} held by the gateway; {r.reason or ''}")
    ]
    for d in r.decisions:
        verb = "approved" if d.decision == "approve" else "rejected"
        entries.append(Entry(d.created_at, d.approver, f"{verb} (via {d.channel})", d.comment))
    if r.status in ("expired", "cancelled"):
        entries.append(Entry(r.decided_at, r.decided_by or "system", str(r.status), r.comment))
    if r.claimed_at is not None:
        entries.append(Entry(r.claimed_at, "gateway", "ran the call", None))
    if r.outcome is not None:
        result = "failed" if r.outcome.is_error else "succeeded"
        entries.append(Entry(r.outcome.at, "gateway", f"the call {result}", r.outcome.summary))
    return entries


def timeline(session: Session, request: RequestPublic) -> list[Entry]:
    """Everything that happened to `request`, oldest first."""
    source = _audit_source()
    if source is not None:
        try:
            entries = _from_audit(source(session, request.id))
        except Exception:  # the audit trail is optional here; never break the page
            session.rollback()
            log.warning("no audit timeline for %s; showing decisions", request.id, exc_info=True)
        else:
            if entries:
                return entries
    return _from_request(request)
