"""What the dashboard shows about a request: view models and formatting helpers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from approvals import lifecycle
from approvals.dashboard.auth import DashboardSession
from approvals.models import RequestStatus, utcnow
from approvals.request_store import RequestRecord
from approvals.schemas import RequestPublic


def _span(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    return f"{hours // 24}d {hours % 24}h"


def age(at: datetime, now: datetime | None = None) -> str:
    """'3m 05s ago'."""
    return _span(((now or utcnow()) - at).total_seconds()) + " ago"


def countdown(at: datetime, now: datetime | None = None) -> str:
    """'expires in 14m 32s', or 'expired' once past."""
    left = (at - (now or utcnow())).total_seconds()
    return f"expires in {_span(left)}" if left > 0 else "expiring now"


def pretty(arguments: dict[str, Any]) -> str:
    """Arguments as indented JSON (already masked by the service)."""
    return json.dumps(arguments, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def stamp(at: datetime | None) -> str:
    """'2026-11-25 14:03:07 UTC'."""
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else ""


STATUS_LABELS = {
    RequestStatus.PENDING: "Pending",
    RequestStatus.APPROVED: "Approved",
    RequestStatus.REJECTED: "Rejected",
    RequestStatus.EXPIRED: "Expired",
    RequestStatus.CANCELLED: "Cancelled",
}


@dataclass(frozen=True)
class RequestView:
    """A request plus what the signed-in person may do about it."""

    r: RequestPublic
    arguments: str
    can_decide: bool
    # Why there are no buttons, in words (None when there are).
    note: str | None
    my_vote: str | None

    @property
    def approved_arguments(self) -> str:
        return pretty(self.r.approved_arguments or {})

    @property
    def edit_text(self) -> str:
        """What the JSON editor starts from: the arguments that would run now."""
        current = self.r.approved_arguments
        return pretty(self.r.arguments if current is None else current)

    @property
    def progress(self) -> str:
        return f"{self.r.approvals} of {self.r.quorum}"

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.r.status, str(self.r.status))


def view(session: Session, request: RequestRecord, person: DashboardSession) -> RequestView:
    """The view of `request` for `person`; buttons only when the rules would accept the vote."""
    public = lifecycle.readable(session, request)
    my_vote = next((d.decision for d in public.decisions if d.approver == person.name), None)
    note: str | None = None
    if request.status != RequestStatus.PENDING:
        note = None
    elif not person.may_decide_at_all:
        note = f"Your role ({person.role}) cannot decide requests."
    elif my_vote is not None:
        note = f"You voted to {my_vote}; waiting for more approvals."
    else:
        note = lifecycle.may_decide(request, person.name, person.role)
        if note is not None:
            note = note[0].upper() + note[1:] + "."
    can_decide = request.status == RequestStatus.PENDING and note is None
    return RequestView(
        r=public, arguments=pretty(public.arguments), can_decide=can_decide, note=note,
        my_vote=my_vote,
    )  # fmt: skip
