"""Who may decide or read a request: the policy's people, on the policy's clock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from approvals.models import Role, utcnow
from approvals.request_store import RequestRecord


def may_decide(
    request: RequestRecord,
    approver: str,
    role: str = Role.APPROVER,
    now: datetime | None = None,
) -> str | None:
    """Why `approver` (a token of `role`) may not decide `request` at `now`, or None when
    they may.

    Only the people the service's policy lists for the request decide it; where it
    lists nobody, any approver token does. An escalation step's group joins them
    `after` its delay from the request's creation, not before (whether or not the
    sweeper has announced it yet: the time is the rule). An admin token is no
    override: it decides only where the policy names it."""
    refusal = eligibility(request.caller, request.approvers, request.approver_group, approver, role)
    if refusal is None or approver == request.caller or not request.approvers:
        return refusal
    now = now or utcnow()
    waiting: tuple[str, datetime] | None = None
    for step in request.escalations or ():
        if approver in step["members"]:
            from_time = request.created_at + timedelta(seconds=step["after_seconds"])
            if now >= from_time:
                return None
            waiting = waiting or (step["group"], from_time)
    if waiting is None:
        return refusal
    group, from_time = waiting
    left = (from_time - now).total_seconds()
    return (
        f"{approver} may decide only once the request escalates to {group}, "
        f"at {from_time:%Y-%m-%d %H:%M:%S} UTC (in {left:.0f} s)"
    )


def eligibility(
    caller: str, approvers: Sequence[str], group: str | None, approver: str, role: str
) -> str | None:
    """Why `approver` (a token of `role`) may not approve `caller`'s calls under a rule that
    lists `approvers` (of `group`), or None when they may. See `may_decide`. Escalation
    groups are not counted: they join one request at a time, never a rule (nor a grant)."""
    if approver == caller:
        return f"{approver} made this call and cannot approve it"
    if approvers:
        if approver not in approvers:
            return f"{approver} is not a member of {group or 'the listed approvers'}"
    elif role != Role.APPROVER:
        return f"{approver} is not an approver (role {role}); the policy lists no approvers here"
    return None


def may_read(request: RequestRecord, name: str, role: str) -> bool:
    """Gateways read only the requests they created; approvers, auditors and admins all."""
    return role != Role.GATEWAY or request.created_by == name
