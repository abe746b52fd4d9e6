"""A decision form of the dashboard, run under the same rules as every channel.

Besides approve and reject, a card offers "Edit & approve" (the arguments as JSON
text, checked here for shape and again by the lifecycle for everything else) and
"Approve and allow for 1 h" (the approval plus a one-hour grant for this caller and
tool, any arguments; approvals/grants.py decides whether this person may grant it).
"""

from __future__ import annotations

from dataclasses import dataclass

from approvals import edits, errors, grants, lifecycle
from approvals.dashboard.auth import DashboardSession
from approvals.db import WriteScope
from approvals.grant_schemas import GrantCreate
from approvals.schemas import RequestPublic
from gateway_plugin.policy import Policy

GRANT_SECONDS = 3600
DECISIONS = ("approve", "reject", "edit", "approve_grant")


@dataclass(frozen=True)
class DecisionForm:
    decision: str
    comment: str | None
    # The edited arguments as JSON text ("edit" only).
    arguments: str | None
    # The hash of the arguments shown on the card when the person decided.
    seen_hash: str | None


def _seen(value: str | None) -> str | None:
    if value and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value
    return None


def run(
    session: WriteScope,
    form: DecisionForm,
    *,
    request_id: str,
    person: DashboardSession,
    policy: Policy | None,
) -> RequestPublic:
    """Record the person's decision (and grant, for "approve_grant"); the request after it."""
    if not person.may_decide_at_all:
        raise errors.Forbidden(
            f"a token with role {person.role} cannot decide requests", code="forbidden"
        )
    if form.decision not in DECISIONS:
        raise errors.BadRequest(
            "decision must be approve, reject, edit or approve_grant", code="invalid_decision"
        )
    arguments = edits.parse_object(form.arguments) if form.decision == "edit" else None
    result = lifecycle.decide(
        session,
        request_id,
        approver=person.name,
        decision="reject" if form.decision == "reject" else "approve",
        comment=form.comment,
        channel="dashboard",
        role=person.role,
        arguments=arguments,
        seen_hash=_seen(form.seen_hash),
        policy=policy,
    )
    if form.decision == "approve_grant":
        request = result.view
        grants.create(
            session,
            GrantCreate(
                tool=request.tool,
                server=request.server,
                caller=request.caller,
                expires_in_seconds=GRANT_SECONDS,
            ),
            policy=policy,
            by=person.name,
            role=person.role,
            channel="dashboard",
        )
    return result.view
