"""The rules of time-boxed grants: who may create, use up and revoke them.

A grant lets one caller's calls of one tool (on one server, or any; with exactly
some arguments, or any) run without a hold until it expires or is used up. Only
an approver who could approve such a call alone may grant it: the service's
policy must say `require_approval` with quorum 1 and list them (or list nobody,
for an approver token). The service stays the authority when the grant is used:
the gateway asks it for every call (`use`), the call's own arguments are checked
against the policy again (a call that now needs other approvers or a quorum is
not covered), and the use is counted with a compare-and-set so racing gateways
never exceed `max_uses`. Writes go through Core on the scope's connection, like
the request lifecycle (approvals/lifecycle).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, or_, select, update

from approvals.audit import record as audit
from approvals.db import WriteScope
from approvals.errors import Conflict, Forbidden, NotFound, Unprocessable
from approvals.grant_schemas import GrantCreate, GrantPublic, GrantUse
from approvals.lifecycle import eligibility, new_request_id
from approvals.live_events import GrantEvent, announce
from approvals.models import ApiToken, Grant, Role, utcnow
from gateway_plugin.policy import (
    Evaluation,
    Policy,
    canonical_arguments_hash,
    redact_arguments,
)

GRANTS: Table = Grant.__table__  # type: ignore[attr-defined]
TOKENS: Table = ApiToken.__table__  # type: ignore[attr-defined]
# Who revokes a grant whose creator lost their authority.
SYSTEM = "system"
# The roles whose tokens may decide at all, and so grant (see `eligibility` for the rest).
DECIDING_ROLES = frozenset({Role.APPROVER.value, Role.ADMIN.value})


def _grant(row: Any) -> Grant:
    return Grant(**row._mapping)


def _record(
    session: WriteScope,
    event_type: str,
    grant: Grant,
    *,
    actor: str,
    channel: str,
    outcome: str,
    comment: str,
    now: datetime,
    server: str | None = None,
    arguments: dict[str, Any] | None = None,
    arguments_hash: str | None = None,
    policy_key: str | None = None,
) -> None:
    """Append the audit event of a change to `grant` (grant.created / revoked / used) and
    tell listeners once the change commits. `server`, `arguments`, `arguments_hash` and
    `policy_key` describe the call a use covered; by default, the grant's own."""
    audit.append_rows(
        session,
        [
            audit.AuditEventDraft(
                type=event_type,
                actor=actor,
                channel=channel,
                tool=grant.tool,
                server=(grant.server or "") if server is None else server,
                caller=grant.caller,
                outcome=outcome,
                comment=comment,
                arguments=arguments,
                policy_key=policy_key or grant.policy_key,
                time=now,
                arguments_hash=arguments_hash,
            )
        ],
    )
    announce(session, GrantEvent(type=event_type, request_id=grant.id, request={}, at=now))


def _approval_rule(
    policy: Policy | None, tool: str, server: str, arguments: dict[str, Any]
) -> Evaluation | None:
    """The policy's evaluation of the call when it asks for a human, else None."""
    if policy is None:
        return None
    evaluation = policy.evaluate(tool, arguments, server or None)
    if evaluation.hidden or evaluation.action != "require_approval":
        return None
    return evaluation if evaluation.approval is not None else None


def create(
    session: WriteScope,
    data: GrantCreate,
    *,
    policy: Policy | None,
    by: str,
    role: str,
    channel: str = "api",
    now: datetime | None = None,
) -> GrantPublic:
    """Grant `data.caller` calls of `data.tool` for a while, if `by` may approve them alone."""
    now = now or utcnow()
    if policy is None:
        raise Conflict("the service runs without a policy, so it grants nothing", code="no_policy")
    evaluation = _approval_rule(policy, data.tool, data.server or "", data.arguments or {})
    if evaluation is None:
        raise Unprocessable(
            f"the service's policy does not say require_approval for {data.tool!r}, "
            "so there is nothing to grant",
            code="not_require_approval",
        )
    approval = evaluation.approval
    assert approval is not None
    if approval.quorum > 1:
        raise Forbidden(
            f"calls of {data.tool!r} need {approval.quorum} approvers; a grant is one "
            "person's decision, so only quorum-1 rules can be granted",
            code="quorum_rule",
        )
    refusal = eligibility(data.caller, approval.approvers, approval.group, by, role)
    if refusal is not None:
        raise Forbidden(refusal.replace("approve it", "grant it"), code="not_allowed_to_grant")
    arguments = None
    arguments_hash = None
    if data.arguments is not None:
        arguments = redact_arguments(data.arguments, evaluation.redact)
        arguments_hash = canonical_arguments_hash(data.arguments)
    values: dict[str, Any] = {
        "id": new_request_id(),
        "tool": data.tool,
        "server": data.server,
        "caller": data.caller,
        "arguments": arguments,
        "arguments_hash": arguments_hash,
        "policy_key": evaluation.matched_key,
        "created_by": by,
        "created_at": now,
        "expires_at": now + timedelta(seconds=data.expires_in_seconds),
        "max_uses": data.max_uses,
        "uses": 0,
        "revoked_at": None,
        "revoked_by": None,
    }
    session.connection().execute(GRANTS.insert(), values)
    grant = Grant(**values)
    uses = "unlimited uses" if data.max_uses is None else f"at most {data.max_uses} uses"
    scope = "any arguments" if arguments_hash is None else f"arguments_hash={arguments_hash}"
    _record(
        session,
        audit.GRANT_CREATED,
        grant,
        actor=by,
        channel=channel,
        outcome="granted",
        comment=(
            f"grant {grant.id} until {grant.expires_at.isoformat()}; {uses}; "
            f"server {data.server or 'any'}; {scope}"
        ),
        now=now,
        arguments=arguments,
    )
    session.commit()
    return GrantPublic.build(grant)


def _active(now: datetime) -> Any:
    return and_(
        GRANTS.c.revoked_at.is_(None),
        GRANTS.c.expires_at > now,
        or_(GRANTS.c.max_uses.is_(None), GRANTS.c.uses < GRANTS.c.max_uses),
    )


def active(
    session: WriteScope, *, now: datetime | None = None, limit: int = 500
) -> list[GrantPublic]:
    """Grants still in force (not revoked, expired or used up), newest first."""
    now = now or utcnow()
    rows = session.connection().execute(
        select(GRANTS).where(_active(now)).order_by(GRANTS.c.created_at.desc()).limit(limit)
    )
    return [GrantPublic.build(_grant(row)) for row in rows]


def revoke(
    session: WriteScope,
    grant_id: str,
    *,
    policy: Policy | None,
    by: str,
    role: str,
    channel: str = "api",
    now: datetime | None = None,
) -> GrantPublic:
    """End a grant now. Its creator, an admin, or an approver the policy lists for the tool."""
    now = now or utcnow()
    conn = session.connection()
    row = conn.execute(select(GRANTS).where(GRANTS.c.id == grant_id)).first()
    if row is None:
        raise NotFound(f"no grant with id {grant_id!r}")
    grant = _grant(row)
    if by != grant.created_by and role != Role.ADMIN:
        evaluation = _approval_rule(policy, grant.tool, grant.server or "", {})
        approvers = evaluation.approval.approvers if evaluation and evaluation.approval else ()
        if by not in approvers:
            raise Forbidden(
                f"{by} neither created grant {grant_id} nor is listed to approve {grant.tool!r}",
                code="not_allowed_to_revoke",
            )
    if grant.revoked_at is not None:
        raise Conflict(
            f"grant {grant_id} was already revoked by {grant.revoked_by}", code="revoked"
        )
    changed = conn.execute(
        update(GRANTS)
        .where(GRANTS.c.id == grant_id, GRANTS.c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_by=by)
    )
    if changed.rowcount != 1:
        session.rollback()
        raise Conflict(f"grant {grant_id} was revoked at the same time", code="revoked")
    grant.revoked_at, grant.revoked_by = now, by
    _record(
        session,
        audit.GRANT_REVOKED,
        grant,
        actor=by,
        channel=channel,
        outcome="revoked",
        comment=f"grant {grant.id} revoked after {grant.uses} uses",
        now=now,
    )
    session.commit()
    return GrantPublic.build(grant)


def _live_roles(conn: Any, name: str, now: datetime) -> list[str]:
    """The roles of `name`'s live (unrevoked, unexpired) tokens."""
    return list(
        conn.execute(
            select(TOKENS.c.role).where(
                TOKENS.c.name == name,
                TOKENS.c.revoked_at.is_(None),
                or_(TOKENS.c.expires_at.is_(None), TOKENS.c.expires_at > now),
            )
        ).scalars()
    )


def _not_grantable(grant: Grant, evaluation: Evaluation | None, roles: list[str]) -> str | None:
    """Why `grant`'s creator, holding tokens of `roles`, could not grant calls the policy
    evaluates as `evaluation` (None: not require_approval), or None when they could."""
    if evaluation is None or evaluation.approval is None:
        return f"the policy no longer says require_approval for {grant.tool!r}"
    if evaluation.matched_key != grant.policy_key:
        return f"the policy now decides {grant.tool!r} under {evaluation.matched_key!r}"
    approval = evaluation.approval
    if approval.quorum != 1:
        return (
            f"the policy now asks {approval.quorum} approvers for {grant.tool!r}, so one "
            "person's grant no longer covers it"
        )
    refusals = [
        eligibility(grant.caller, approval.approvers, approval.group, grant.created_by, role)
        if role in DECIDING_ROLES
        else f"{grant.created_by} is no longer an approver (role {role})"
        for role in roles
    ]
    if all(refusals):
        return f"the policy no longer lets {grant.created_by} grant it: {refusals[0]}"
    return None


def _lost_authority(
    grant: Grant, policy: Policy | None, call: Evaluation, roles: list[str]
) -> str | None:
    """Why `grant`'s creator could no longer make it, or None.

    A grant is its creator's standing decision, so it lasts only as long as their
    authority: a live token of theirs (`roles`: of their live tokens) with a deciding
    role, and the policy still letting them approve alone what the grant covers. That is
    judged on the grant's own scope, as when it was made (its exact arguments, which are
    the call's, or none), so a call that falls under another rule of the entry (a
    production deploy, say) is merely not covered: it cannot end the grant."""
    if not roles:
        return f"{grant.created_by} no longer holds a live API token (revoked or expired)"
    scope = (
        call
        if grant.arguments_hash is not None
        else _approval_rule(policy, grant.tool, grant.server or "", {})
    )
    return _not_grantable(grant, scope, roles)


def _end(session: WriteScope, grant: Grant, reason: str, now: datetime) -> None:
    """Revoke `grant` as the system, with `reason` in the audit log (its creator lost
    the authority it stood on)."""
    changed = session.connection().execute(
        update(GRANTS)
        .where(GRANTS.c.id == grant.id, GRANTS.c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_by=SYSTEM)
    )
    if changed.rowcount != 1:
        return  # someone revoked it at the same time: it is ended either way
    _record(
        session,
        audit.GRANT_REVOKED,
        grant,
        actor=SYSTEM,
        channel="gateway",
        outcome="revoked",
        comment=f"grant {grant.id} revoked after {grant.uses} uses: {reason}",
        now=now,
    )


def use(
    session: WriteScope,
    data: GrantUse,
    *,
    policy: Policy | None,
    gateway: str,
    now: datetime | None = None,
) -> GrantPublic:
    """Use up one call of a grant that covers `data`, or NotFound (code no_grant).

    The call is evaluated again under the service's policy: a grant covers it only if
    the policy still says require_approval with quorum 1 under the rule the grant was
    made for, and its creator may still approve it alone with a live token. A grant
    whose creator lost that authority is revoked (by "system", the reason in the audit
    log) instead of used: fail closed."""
    now = now or utcnow()
    evaluation = _approval_rule(policy, data.tool, data.server, data.arguments)
    arguments_hash = canonical_arguments_hash(data.arguments)
    conn = session.connection()
    candidates = (
        []
        if evaluation is None
        else conn.execute(
            select(GRANTS)
            .where(
                GRANTS.c.tool == data.tool,
                GRANTS.c.caller == data.caller,
                or_(GRANTS.c.server.is_(None), GRANTS.c.server == data.server),
                or_(
                    GRANTS.c.arguments_hash.is_(None),
                    GRANTS.c.arguments_hash == arguments_hash,
                ),
                _active(now),
            )
            .order_by(GRANTS.c.created_at)
            .limit(20)
        ).all()
    )
    ended = False
    for row in candidates:
        assert evaluation is not None
        grant = _grant(row)
        if grant.created_by == data.caller:
            continue
        roles = _live_roles(conn, grant.created_by, now)
        reason = _lost_authority(grant, policy, evaluation, roles)
        if reason is not None:
            _end(session, grant, reason, now)
            ended = True
            continue
        if _not_grantable(grant, evaluation, roles) is not None:
            continue  # this call needs someone else (another rule): the grant does not cover it
        # One statement counts and checks: the WHERE is evaluated again on the locked row
        # (PostgreSQL) or by the only writer (SQLite), so racing uses never pass max_uses.
        taken = conn.execute(
            update(GRANTS)
            .where(GRANTS.c.id == grant.id, _active(now))
            .values(uses=GRANTS.c.uses + 1)
            .returning(GRANTS.c.uses)
        ).first()
        if taken is None:
            continue  # used up or revoked meanwhile
        grant.uses = int(taken[0])
        limit = "" if grant.max_uses is None else f" of {grant.max_uses}"
        _record(
            session,
            audit.GRANT_USED,
            grant,
            actor=gateway,
            channel="gateway",
            outcome="allowed",
            comment=f"grant {grant.id} by {grant.created_by}; use {grant.uses}{limit}",
            now=now,
            server=data.server,
            arguments=redact_arguments(data.arguments, evaluation.redact),
            arguments_hash=arguments_hash,
            policy_key=evaluation.matched_key,
        )
        session.commit()
        return GrantPublic.build(grant)
    if ended:
        session.commit()  # the revocations and their reasons stay, though the call is refused
    raise NotFound("no grant covers this call", code="no_grant")
