"""One INFO line per committed change of a request: created, decided, expired, claimed, cancelled.

The lines are written after the commit (from the hub's publish, or the route once
its unit of work has committed), so the log never tells of a change that was
rolled back. Each line carries its facts as `extra` fields too, which the JSON
log format (approvals/logs.py) turns into keys.
"""

from __future__ import annotations

import logging
from typing import Any

from approvals.live_events import LiveEvent
from approvals.models import RequestStatus
from approvals.schemas import RequestPublic

# The name operators grep for: the lines tell of the lifecycle's changes.
log = logging.getLogger("approvals.lifecycle")


def _facts(view: RequestPublic, **more: Any) -> dict[str, Any]:
    return {
        "request_id": view.id,
        "tool": view.tool,
        "caller": view.caller,
        **{k: v for k, v in more.items() if v is not None},
    }


def log_event(evt: LiveEvent) -> None:
    """The line for a committed event (the hub calls it for this process's changes)."""
    view = evt.request
    if not isinstance(view, RequestPublic):  # relayed from a replica: logged there
        return
    if evt.type == "request.created":
        log.info(
            "request %s created: tool %s, caller %s, asks %s",
            view.id,
            view.tool,
            view.caller,
            ", ".join(view.approvers) or view.approver_group or "any approver",
            extra=_facts(view, actor=view.gateway),
        )
    elif evt.type == "request.decided":
        settled = view.status in (RequestStatus.APPROVED, RequestStatus.REJECTED)
        vote = view.decisions[-1] if view.decisions else None
        actor = view.decided_by if settled else (vote.approver if vote else None)
        decision = view.status.value if settled else "vote"
        log.info(
            "request %s %s by %s via %s",
            view.id,
            decision if settled else f"got a vote ({view.approvals} of {view.quorum})",
            actor,
            view.channel or (vote.channel if vote else "api"),
            extra=_facts(
                view,
                actor=actor,
                decision=decision,
                channel=view.channel or (vote.channel if vote else None),
            ),
        )
    elif evt.type == "request.expired":
        outcome = "allowed" if view.on_timeout == "allow" else "denied"
        log.info(
            "request %s expired: %s per on_timeout",
            view.id,
            outcome,
            extra=_facts(view, actor="system", decision="expired", channel="sweeper"),
        )
    elif evt.type == "request.cancelled":
        log.info(
            "request %s cancelled by %s",
            view.id,
            view.decided_by,
            extra=_facts(view, actor=view.decided_by, decision="cancelled"),
        )


def log_claimed(view: RequestPublic, gateway: str) -> None:
    """The line for an approval used to run its call (claims publish no event)."""
    log.info(
        "request %s claimed by %s: the call runs",
        view.id,
        gateway,
        extra=_facts(view, actor=gateway, channel="gateway"),
    )
