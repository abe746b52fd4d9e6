"""The business rules of an approval request, in one place.

Every channel (REST API, CLI, dashboard, Slack, the sweeper) goes through these
functions. Each takes a session (or another `db.WriteScope`: the API's group
commit gives each unit a savepoint), does its work in one transaction, commits,
and returns the result; events are published once the commit lands. Writers read
and write plain rows (approvals/request_store.py); ORM objects are for readers.
State changes are compare-and-set on `version`, so exactly one writer wins a race.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, select

from approvals import edits
from approvals import request_store as store
from approvals.audit import record as audit
from approvals.audit.models import AuditEvent
from approvals.audit.schemas import GatewayFact
from approvals.db import WriteScope
from approvals.events import Event, emit
from approvals.models import ApprovalRequest, Decision, RequestStatus, Role, utcnow
from approvals.request_store import RequestRow
from approvals.schemas import RequestCreate, RequestPublic, printable
from gateway_plugin.policy import Policy, canonical_arguments_hash, redact_arguments
from gateway_plugin.policy.preview import cap_text, mask_text


class LifecycleError(Exception):
    """A rule refused the operation; `status` is the HTTP status that says so."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class NotFound(LifecycleError):
    status = 404
    code = "not_found"


class Forbidden(LifecycleError):
    status = 403
    code = "forbidden"


class Conflict(LifecycleError):
    status = 409
    code = "conflict"


class Unprocessable(LifecycleError):
    status = 422
    code = "unprocessable"


@dataclass(frozen=True)
class ApprovalTerms:
    """What the service's policy says about one call: who decides it, how, by when.

    Computed by the service from the call alone; nothing a client sends changes it."""

    arguments_hash: str
    # The arguments as stored and shown: secret-looking and `redact`ed values masked.
    shown_arguments: dict[str, Any]
    policy_key: str | None
    reason: str | None
    approver_group: str | None
    approvers: list[str]
    quorum: int
    timeout_seconds: float
    on_timeout: str
    # Whether an approver may change the arguments before approving them.
    editable: bool = True
    remind_every_seconds: float | None = None
    # As stored on the request: [{"after_seconds", "group", "members"}], in time order.
    escalations: tuple[dict[str, Any], ...] = ()
    # The rule's redaction globs, for the preview's text as for the arguments.
    redact: tuple[str, ...] = ()


def approval_terms(policy: Policy | None, data: RequestCreate) -> ApprovalTerms:
    """The terms the service's own policy sets for `data`, or the reason there are none."""
    if policy is None:
        raise Conflict(
            "the service runs without a policy, so it cannot approve anything: "
            "start it with `signoff serve --policy FILE`",
            code="no_policy",
        )
    evaluation = policy.evaluate(data.tool, data.arguments, data.server or None)
    approval = evaluation.approval
    # A confirm rule that names approvers falls back to them for clients that cannot confirm.
    needs_people = evaluation.action in ("require_approval", "confirm")
    if evaluation.hidden or not needs_people or approval is None:
        action = "hide" if evaluation.hidden else evaluation.action
        raise Unprocessable(
            f"the service's policy (version {policy.version}) says {action} for "
            f"{data.tool!r}, so there is nothing to approve",
            code="not_require_approval",
        )
    arguments_hash = canonical_arguments_hash(data.arguments)
    if data.arguments_hash is not None and data.arguments_hash != arguments_hash:
        raise Unprocessable(
            "arguments_hash does not match the arguments sent "
            f"(the service computed {arguments_hash})",
            code="arguments_hash_mismatch",
        )
    return ApprovalTerms(
        arguments_hash=arguments_hash,
        shown_arguments=redact_arguments(data.arguments, evaluation.redact),
        policy_key=evaluation.matched_key,
        reason=approval.reason or evaluation.reason,
        approver_group=approval.group,
        approvers=sorted(set(approval.approvers)),
        quorum=approval.quorum,
        timeout_seconds=approval.timeout_seconds,
        on_timeout=approval.on_timeout,
        editable=approval.editable,
        remind_every_seconds=approval.remind_every_seconds,
        escalations=tuple(
            {"after_seconds": s.after_seconds, "group": s.group, "members": list(s.members)}
            for s in approval.escalations
        ),
        redact=evaluation.redact,
    )


def shown_preview(data: RequestCreate, terms: ApprovalTerms) -> dict[str, Any] | None:
    """The preview as stored and shown: masked as the arguments are (a secret it echoes
    back included), then capped."""
    if data.preview is None:
        return None
    preview = data.preview.model_copy()
    if preview.text is not None:
        preview.text = cap_text(mask_text(preview.text, data.arguments, terms.redact))
    if preview.error is not None:
        preview.error = mask_text(preview.error, data.arguments, terms.redact)
    return preview.model_dump(mode="json")


def new_request_id() -> str:
    """A short random id that is safe in URLs and easy to paste into a CLI."""
    return secrets.token_hex(8)


def binding_hash(caller: str, server: str, tool: str, arguments_hash: str) -> str:
    """Identify one exact call: an approval is bound to it and to nothing else."""
    material = json.dumps([caller, server, tool, arguments_hash], separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()


def public(
    session: WriteScope,
    request: ApprovalRequest | RequestRow,
    decisions: Sequence[Decision | Any] | None = None,
) -> RequestPublic:
    """The public view of `request` with its decisions (read unless the caller knows them)."""
    if decisions is None:
        decisions = store.decisions_of(session.connection(), request.id)
    return RequestPublic.build(request, decisions)


def readable(session: WriteScope, request: ApprovalRequest | RequestRow) -> RequestPublic:
    """The public view for readers (API reads, dashboard, Slack): never fails on one bad row."""
    return printable(public(session, request))


def _emit(
    session: WriteScope,
    event_type: str,
    request: ApprovalRequest | RequestRow,
    decisions: Sequence[Decision | Any] | None = None,
) -> RequestPublic:
    """Queue the event for after the commit; the public view it carries is returned."""
    view = public(session, request, decisions)
    emit(session, Event(type=event_type, request_id=request.id, request=view))
    return view


def _fact(
    event_type: str,
    request: ApprovalRequest | RequestRow,
    *,
    actor: str,
    channel: str,
    now: datetime,
    outcome: str | None = None,
    comment: str | None = None,
    with_arguments: bool = False,
    arguments: dict[str, Any] | None = None,
    arguments_hash: str | None = None,
) -> audit.EventDraft:
    """An audit event about `request` (see approvals/audit/record.py for the types)."""
    edited = request.approved_arguments_hash
    return audit.EventDraft(
        type=event_type,
        actor=actor,
        channel=channel,
        request_id=request.id,
        tool=request.tool,
        server=request.server,
        caller=request.caller,
        outcome=outcome,
        comment=comment,
        arguments=arguments
        if arguments is not None
        else (request.arguments if with_arguments else None),
        policy_key=request.policy_key,
        time=now,
        # Every fact about an edited request names both the call asked and the call approved.
        arguments_hash=arguments_hash or (request.arguments_hash if edited else None),
        approved_arguments_hash=edited,
    )


def _audit(session: WriteScope, *facts: audit.EventDraft) -> None:
    """Append audit events to this transaction; every caller commits right after."""
    audit.append_rows(session, facts)


def get_request(session: Session, request_id: str) -> ApprovalRequest:
    """The request with this id as an ORM object (for readers), or NotFound."""
    request = session.get(ApprovalRequest, request_id)
    if request is None:
        raise NotFound(f"no request with id {request_id!r}")
    return request


def _load(session: WriteScope, request_id: str) -> RequestRow:
    """The request with this id as stored now (for writers), or NotFound."""
    request = store.load(session.connection(), request_id)
    if request is None:
        raise NotFound(f"no request with id {request_id!r}")
    return request


@dataclass(frozen=True)
class Created:
    # As stored after the call: a new row, or the request that was reused.
    request: RequestRow
    # False when an identical open request (or the same Idempotency-Key) was reused.
    created: bool
    # The request as the API shows it, read in the same transaction.
    view: RequestPublic


# The columns of a new request that only later events fill in.
_UNDECIDED: dict[str, object] = {
    "decided_at": None,
    "decided_by": None,
    "decision_comment": None,
    "decision_channel": None,
    "claimed_at": None,
    "outcome_is_error": None,
    "outcome_summary": None,
    "outcome_at": None,
    "approved_arguments": None,
    "approved_arguments_hash": None,
    "edited_by": None,
    "version": 0,
    "escalated": 0,
}


def _schedule(terms: ApprovalTerms, now: datetime) -> dict[str, object]:
    """The columns that say when a new request is reminded and escalated."""
    remind = terms.remind_every_seconds
    first_step = terms.escalations[0]["after_seconds"] if terms.escalations else None
    return {
        "escalations": list(terms.escalations),
        "remind_every_seconds": remind,
        "next_reminder_at": None if remind is None else now + timedelta(seconds=remind),
        "next_escalation_at": None if first_step is None else now + timedelta(seconds=first_step),
    }


def create_request(
    session: WriteScope,
    data: RequestCreate,
    *,
    policy: Policy | None,
    created_by: str,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> Created:
    """Queue a suspended call on the terms of the service's `policy`, or attach to the open
    request the same gateway made for the identical call."""
    now = now or utcnow()
    terms = approval_terms(policy, data)
    binding = binding_hash(data.caller, data.server, data.tool, terms.arguments_hash)
    if idempotency_key is not None:
        existing = store.by_idempotency_key(session.connection(), created_by, idempotency_key)
        if existing is not None:
            if existing.binding_hash != binding:
                raise Conflict(
                    "Idempotency-Key was already used for a different call",
                    code="idempotency_conflict",
                )
            return Created(existing, created=False, view=public(session, existing))

    open_request = _open_request_for(session, binding, created_by, terms, now)
    if open_request is not None:
        return Created(open_request, created=False, view=public(session, open_request))

    try:
        request = store.insert_request(
            # Not kept from the start: a commit above (an expiry) releases it.
            session.connection(),
            {
                "id": new_request_id(),
                "status": RequestStatus.PENDING,
                "tool": data.tool,
                "server": data.server,
                "caller": data.caller,
                "session_id": data.session_id,
                "arguments": terms.shown_arguments,
                "arguments_hash": terms.arguments_hash,
                "binding_hash": binding,
                "policy_key": terms.policy_key,
                "reason": terms.reason,
                "approver_group": terms.approver_group,
                "approvers": terms.approvers,
                "quorum": terms.quorum,
                "approvals_count": 0,
                "on_timeout": terms.on_timeout,
                "editable": terms.editable,
                "created_by": created_by,
                "idempotency_key": idempotency_key,
                "created_at": now,
                "expires_at": now + timedelta(seconds=terms.timeout_seconds),
                "preview": shown_preview(data, terms),
                **_UNDECIDED,
                **_schedule(terms, now),
            },
        )
    except IntegrityError:
        # A concurrent retry with the same Idempotency-Key won; hand back its request.
        session.rollback()
        return create_request(
            session,
            data,
            policy=policy,
            created_by=created_by,
            idempotency_key=idempotency_key,
            now=now,
        )
    view = _emit(session, "request.created", request, decisions=[])
    _audit(
        session,
        _fact(
            audit.REQUEST_CREATED,
            request,
            actor=created_by,
            channel="gateway",
            now=now,
            outcome="pending",
            comment=request.reason,
            with_arguments=True,
        ),
    )
    session.commit()
    return Created(request, created=True, view=view)


def _open_request_for(
    session: WriteScope, binding: str, gateway: str, terms: ApprovalTerms, now: datetime
) -> RequestRow | None:
    """The request a retry of the identical call through the same gateway should continue.

    Another gateway's request never counts: a token cannot queue a call for someone
    else's gateway to attach to. Nor does one made on other terms (the policy changed
    since: who approved then may not be who the policy names now), nor an approval
    past its use-by time (`_usable`)."""
    for request in store.open_for_binding(session.connection(), binding, gateway):
        if request.status == RequestStatus.PENDING and request.expires_at <= now:
            try:
                _expire(session, request, now)
                session.commit()
            except Conflict:  # decided or expired elsewhere meanwhile: take it as it is now
                fresh = store.load(session.connection(), request.id)
                if fresh is None:
                    continue
                request = fresh
        if not _same_terms(request, terms):
            continue
        if request.status == RequestStatus.PENDING:
            return request
        if request.allows_call() and _usable(request, now):
            return request
    return None


def _same_terms(request: RequestRow, terms: ApprovalTerms) -> bool:
    return (
        sorted(request.approvers) == terms.approvers
        and request.quorum == terms.quorum
        and request.on_timeout == terms.on_timeout
        and list(request.escalations or ()) == list(terms.escalations)
    )


def _usable(request: ApprovalRequest | RequestRow, now: datetime) -> bool:
    """An approval (or an on_timeout allow) may be used for one timeout period after it was
    given: a call retried days later asks again."""
    if request.decided_at is None:
        return False
    return now < request.decided_at + (request.expires_at - request.created_at)


def _transition(
    session: WriteScope, request: ApprovalRequest | RequestRow, **changes: object
) -> None:
    """Compare-and-set: apply `changes` only if nobody changed the request since we read it.

    `request` then shows the stored values and the new version.
    """
    if not store.compare_and_set(session.connection(), request.id, request.version, changes):
        session.rollback()
        raise Conflict("the request was changed by someone else at the same time; reload it")
    for key, value in {**changes, "version": request.version + 1}.items():
        if isinstance(request, ApprovalRequest):
            # Without marking the object dirty, which would write it again at a flush.
            set_committed_value(request, key, value)
        else:
            setattr(request, key, value)


def _require_pending(request: ApprovalRequest | RequestRow) -> None:
    if request.status != RequestStatus.PENDING:
        who = f" by {request.decided_by}" if request.decided_by else ""
        raise Conflict(
            f"request {request.id} is already {request.status}{who}", code="already_decided"
        )


def may_decide(
    request: ApprovalRequest | RequestRow,
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


def _require_gateway(request: ApprovalRequest | RequestRow, gateway: str) -> None:
    """Only the gateway that created a request may wait on, claim or report on it; to any
    other token it does not exist."""
    if request.created_by != gateway:
        raise NotFound(f"no request with id {request.id!r}")


def may_read(request: ApprovalRequest | RequestRow, name: str, role: str) -> bool:
    """Gateways read only the requests they created; approvers, auditors and admins all."""
    return role != Role.GATEWAY or request.created_by == name


@dataclass(frozen=True)
class Decided:
    # As stored after the vote.
    request: RequestRow
    # True when this vote settled the request (quorum reached, or a rejection).
    final: bool
    # The request as the API shows it after the vote, read in the same transaction.
    view: RequestPublic


def decide(
    session: WriteScope,
    request_id: str,
    *,
    approver: str,
    decision: str,
    comment: str | None = None,
    channel: str = "api",
    role: str = Role.APPROVER,
    arguments: dict[str, Any] | None = None,
    seen_hash: str | None = None,
    policy: Policy | None = None,
    now: datetime | None = None,
) -> Decided:
    """Record an approver's vote; quorum approvals approve, one rejection rejects.

    With `arguments` the approver changed the call before approving it (see `_edit`;
    `policy` is the service's, which the changed call must still fall under). With
    `seen_hash` the vote counts only if the arguments that would run still hash to it:
    nobody changed them since the approver looked."""
    if decision not in ("approve", "reject"):
        raise LifecycleError("decision must be 'approve' or 'reject'", code="invalid_decision")
    if arguments is not None and decision != "approve":
        raise Unprocessable(
            "arguments may be changed only with an approval", code="edit_needs_approve"
        )
    now = now or utcnow()
    request = _load(session, request_id)
    if request.status == RequestStatus.PENDING and request.expires_at <= now:
        _expire(session, request, now)
        session.commit()
    _require_pending(request)
    refusal = may_decide(request, approver, role, now)
    if refusal is not None:
        raise Forbidden(refusal, code="not_allowed_to_decide")
    if seen_hash is not None and seen_hash != effective_hash(request):
        raise Conflict(
            f"the arguments of request {request.id} were changed by {request.edited_by} "
            "since you looked; reload it and decide again",
            code="arguments_changed",
        )
    edit: _Edit | None = None
    if arguments is not None:
        edit = _edit(session, request, arguments, approver=approver, policy=policy)
    try:
        vote = store.insert_vote(
            session.connection(),
            {
                "request_id": request.id,
                "approver": approver,
                "decision": decision,
                "comment": comment,
                "channel": channel,
                "created_at": now,
            },
        )
    except IntegrityError:  # the table allows one vote per approver and request
        session.rollback()
        raise Conflict(
            f"{approver} has already voted on request {request.id}", code="duplicate_vote"
        ) from None
    earlier_votes = 0 if edit is not None else request.approvals_count
    approvals = earlier_votes + (1 if decision == "approve" else 0)
    final = decision == "reject" or approvals >= request.quorum
    changes: dict[str, object] = {"approvals_count": approvals}
    if edit is not None:
        changes.update(
            approved_arguments=edit.arguments,
            approved_arguments_hash=edit.arguments_hash,
            edited_by=approver,
        )
    if final:
        changes.update(
            status=RequestStatus.APPROVED if decision == "approve" else RequestStatus.REJECTED,
            decided_at=now,
            decided_by=approver,
            decision_comment=comment,
            decision_channel=channel,
        )
    _transition(session, request, **changes)
    # Votes before this one were approvals (a rejection settles the request), so
    # with none counted this vote is the only one and need not be read back.
    view = _emit(session, "request.decided", request, None if earlier_votes else [vote])
    facts = []
    if edit is not None:
        facts.append(edit.fact(request, approver=approver, channel=channel, now=now))
    facts.append(
        _fact(
            audit.DECISION_RECORDED,
            request,
            actor=approver,
            channel=channel,
            now=now,
            outcome=decision,
            comment=comment,
        )
    )
    if final and decision == "approve" and request.quorum > 1:
        facts.append(
            _fact(
                audit.QUORUM_REACHED,
                request,
                actor="system",
                channel=channel,
                now=now,
                outcome="approved",
                comment=f"{approvals} of {request.quorum} approvals",
            )
        )
    if final:
        settled = "approved" if decision == "approve" else "rejected"
        facts.append(
            _fact(
                audit.REQUEST_APPROVED if settled == "approved" else audit.REQUEST_REJECTED,
                request,
                actor=approver,
                channel=channel,
                now=now,
                outcome=settled,
                comment=comment,
            )
        )
    _audit(session, *facts)
    session.commit()
    return Decided(request, final, view)


def effective_hash(request: ApprovalRequest | RequestRow) -> str:
    """The hash of the arguments the call would run with: the approved ones once edited."""
    return request.approved_arguments_hash or request.arguments_hash


@dataclass(frozen=True)
class _Edit:
    """Arguments an approver changed, checked: what is stored and what the log says."""

    arguments: dict[str, Any]
    arguments_hash: str
    changed: list[str]
    voided: list[str]

    def fact(
        self, request: RequestRow, *, approver: str, channel: str, now: datetime
    ) -> audit.EventDraft:
        voided = f"; approvals voided: {', '.join(self.voided)}" if self.voided else ""
        return _fact(
            audit.ARGUMENTS_EDITED,
            request,
            actor=approver,
            channel=channel,
            now=now,
            outcome="edited",
            comment=(
                f"edited by {approver}; changed keys: {', '.join(self.changed) or 'none'}{voided}"
            ),
            arguments=self.arguments,
        )


def _edit(
    session: WriteScope,
    request: RequestRow,
    arguments: dict[str, Any],
    *,
    approver: str,
    policy: Policy | None,
) -> _Edit:
    """Check arguments an approver changed; void the approvals given to the old ones.

    The changed call must be editable and fall under the same terms of the service's
    policy as the original (else a narrow group could approve, by editing, a call the
    policy gives to a wider one, or one it denies)."""
    if not request.editable:
        raise Unprocessable(
            f"the policy says the arguments of {request.tool} may not be edited "
            '("editable": false): approve or reject the call as made',
            code="not_editable",
        )
    try:
        edits.check_shape(arguments)
    except edits.EditRefused as exc:
        raise _refusal(exc) from None
    data = RequestCreate(
        tool=request.tool, server=request.server, caller=request.caller, arguments=arguments
    )
    try:
        terms = approval_terms(policy, data)
    except Unprocessable as exc:
        raise Unprocessable(
            f"the edited call is not one to approve: {exc.message}", code="edit_changes_terms"
        ) from None
    if not terms.editable:
        raise Unprocessable(
            f"the policy says the edited call to {request.tool} may not be edited",
            code="not_editable",
        )
    if not _same_terms(request, terms):
        raise Unprocessable(
            "the edited call falls under other approval terms of the policy "
            f"(approvers {', '.join(terms.approvers) or 'any'}, quorum {terms.quorum}); "
            "reject it and let the agent make that call itself",
            code="edit_changes_terms",
        )
    try:
        edits.check_masks(arguments, terms.shown_arguments, request.arguments)
    except edits.EditRefused as exc:
        raise _refusal(exc) from None
    voided = store.void_approvals(session.connection(), request.id)
    return _Edit(
        arguments=terms.shown_arguments,
        arguments_hash=terms.arguments_hash,
        changed=edits.changed_keys(request.approved_arguments or request.arguments, arguments),
        voided=voided,
    )


def _refusal(exc: edits.EditRefused) -> LifecycleError:
    error = LifecycleError(exc.message, code=exc.code)
    error.status = exc.status
    return error


@dataclass(frozen=True)
class Refused:
    """A vote of a batch that a rule refused (the others went ahead)."""

    request_id: str
    code: str
    message: str
    status: int


# At most this many requests are decided in one batch.
MAX_BATCH = 100


def decide_each(
    sessions: Callable[[], AbstractContextManager[WriteScope]],
    request_ids: Sequence[str],
    *,
    approver: str,
    decision: str,
    comment: str | None = None,
    channel: str = "dashboard",
    role: str = Role.APPROVER,
    seen_hashes: Mapping[str, str] | None = None,
) -> list[Decided | Refused]:
    """The same vote on several requests, each its own `decide` in its own transaction:
    every rule applies to each one, and a refusal (not an approver of that call, already
    decided, expired, unknown, its arguments edited since `seen_hashes` said) is reported
    for that request while the others go ahead."""
    if decision not in ("approve", "reject"):
        raise LifecycleError("decision must be 'approve' or 'reject'", code="invalid_decision")
    if len(request_ids) > MAX_BATCH:
        raise Unprocessable(f"at most {MAX_BATCH} requests at once", code="batch_too_large")
    outcomes: list[Decided | Refused] = []
    for request_id in dict.fromkeys(request_ids):
        try:
            with sessions() as session:
                outcomes.append(
                    decide(
                        session,
                        request_id,
                        approver=approver,
                        decision=decision,
                        comment=comment,
                        channel=channel,
                        role=role,
                        seen_hash=(seen_hashes or {}).get(request_id),
                    )
                )
        except LifecycleError as exc:
            outcomes.append(Refused(request_id, exc.code, exc.message, exc.status))
    return outcomes


def _expire(session: WriteScope, request: ApprovalRequest | RequestRow, now: datetime) -> None:
    outcome = "allowed" if request.on_timeout == "allow" else "denied"
    _transition(
        session,
        request,
        status=RequestStatus.EXPIRED,
        decided_at=now,
        decided_by="system",
        decision_comment=f"no decision before the timeout; {outcome} per on_timeout",
        decision_channel="sweeper",
    )
    _emit(session, "request.expired", request)
    _audit(
        session,
        _fact(
            audit.REQUEST_EXPIRED,
            request,
            actor="system",
            channel="sweeper",
            now=now,
            outcome=outcome,
            comment=request.decision_comment,
        ),
    )


def expire_due(session: Session, *, now: datetime | None = None, batch: int = 200) -> list[str]:
    """Expire pending requests past their timeout, applying on_timeout; returns their ids."""
    now = now or utcnow()
    due = session.exec(
        select(ApprovalRequest)
        .where(ApprovalRequest.status == RequestStatus.PENDING, ApprovalRequest.expires_at <= now)
        .limit(batch)
    ).all()
    expired: list[str] = []
    for request in due:
        # After a Conflict's rollback the rest of the batch reloads as stored now: one
        # decided or expired meanwhile (another replica's sweeper) must be left alone,
        # or the compare-and-set, given the fresh version, would expire it again.
        if request.status != RequestStatus.PENDING:
            continue
        try:
            _expire(session, request, now)
            session.commit()
        except Conflict:
            continue  # decided or expired elsewhere in the meantime
        expired.append(request.id)
    return expired


def cancel(
    session: WriteScope,
    request_id: str,
    *,
    by: str,
    admin: bool = False,
    by_caller: bool = False,
    now: datetime | None = None,
) -> RequestRow:
    """The agent went away: a pending request ends as cancelled (by its gateway, or an admin).

    `by_caller`: the creating gateway says the agent withdrew the call itself (MCP
    tasks/cancel); the request's caller is then the actor."""
    now = now or utcnow()
    request = _load(session, request_id)
    if not admin or by_caller:
        _require_gateway(request, by)
    _require_pending(request)
    actor = request.caller if by_caller else by
    _transition(
        session,
        request,
        status=RequestStatus.CANCELLED,
        decided_at=now,
        decided_by=actor,
        decision_comment=(
            "the caller withdrew the call" if by_caller else "the caller cancelled the call"
        ),
        decision_channel="gateway",
    )
    _emit(session, "request.cancelled", request)
    _audit(
        session,
        _fact(
            audit.REQUEST_CANCELLED,
            request,
            actor=actor,
            channel="gateway",
            now=now,
            outcome="cancelled",
            comment=request.decision_comment,
        ),
    )
    session.commit()
    return request


def claim(
    session: WriteScope, request_id: str, *, by: str, now: datetime | None = None
) -> RequestRow:
    """Use an approval for its one execution; a second claim is refused. `by`: the gateway
    that created the request (no other may)."""
    now = now or utcnow()
    request = _load(session, request_id)
    _require_gateway(request, by)
    if not request.allows_call():
        raise Conflict(
            f"request {request.id} is {request.status}; the call may not run", code="not_approved"
        )
    if request.claimed_at is not None:
        raise Conflict(
            f"the approval of request {request.id} was already used", code="already_claimed"
        )
    if not _usable(request, now):
        raise Conflict(
            f"the approval of request {request.id} is too old to use; call again to ask anew",
            code="approval_stale",
        )
    _transition(session, request, claimed_at=now)
    edited = (
        f"arguments edited by {request.edited_by}; "
        f"approved_arguments_hash={request.approved_arguments_hash}"
        if request.approved_arguments is not None
        else None
    )
    _audit(
        session,
        _fact(
            audit.CALL_FORWARDED,
            request,
            actor=by,
            channel="gateway",
            now=now,
            outcome="forwarded",
            comment=edited,
            with_arguments=True,
            arguments=request.approved_arguments,
        ),
    )
    session.commit()
    return request


def record_outcome(
    session: WriteScope,
    request_id: str,
    *,
    is_error: bool,
    summary: str | None,
    by: str,
    now: datetime | None = None,
) -> RequestRow:
    """Store what happened when the approved call ran (`by`: the gateway that created the
    request and ran it; no other may)."""
    now = now or utcnow()
    request = _load(session, request_id)
    _require_gateway(request, by)
    if request.claimed_at is None:
        raise Conflict(f"request {request.id} has not been run", code="not_claimed")
    if request.outcome_at is not None:
        raise Conflict(
            f"the outcome of request {request.id} is already recorded", code="outcome_recorded"
        )
    _transition(
        session, request, outcome_is_error=is_error, outcome_summary=summary, outcome_at=now
    )
    _audit(
        session,
        _fact(
            audit.CALL_FAILED if is_error else audit.CALL_SUCCEEDED,
            request,
            actor=by,
            channel="gateway",
            now=now,
            outcome="error" if is_error else "ok",
            comment=summary,
        ),
    )
    session.commit()
    return request


def record_notification(
    session: WriteScope,
    request_id: str,
    *,
    channel: str,
    recipients: Sequence[str],
    by: str = "system",
    now: datetime | None = None,
) -> AuditEvent:
    """Record that approvers were notified of a request (e.g. a Slack message was posted).

    Call it once the notification went out; `recipients` are approver names,
    user ids or a channel, as the notifier knows them.
    """
    now = now or utcnow()
    request = _load(session, request_id)
    event = audit.record_event(
        session,
        audit.REQUEST_NOTIFIED,
        actor=by,
        channel=channel,
        request_id=request.id,
        tool=request.tool,
        server=request.server,
        caller=request.caller,
        outcome="sent",
        comment="notified " + (", ".join(recipients) or "nobody"),
        policy_key=request.policy_key,
        time=now,
    )
    session.commit()
    return event


_GATEWAY_OUTCOMES = {
    audit.POLICY_DENIED: "denied",
    audit.POLICY_RATE_LIMITED: "rate_limited",
    audit.CALL_ALLOWED: "allowed",
    audit.CALL_CONFIRMED: "confirmed",
    audit.CALL_DECLINED: "declined",
}


def record_gateway_facts(
    session: WriteScope,
    facts: Sequence[GatewayFact],
    *,
    gateway: str,
    now: datetime | None = None,
) -> list[AuditEvent]:
    """Record calls a gateway settled without an approver (denied, rate limited, allowed, or
    confirmed / declined by the person at the client)."""
    now = now or utcnow()
    drafts = []
    for fact in facts:
        at = fact.at or now
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        drafts.append(
            audit.EventDraft(
                type=fact.type,
                actor=gateway,
                channel="gateway",
                tool=fact.tool,
                server=fact.server,
                caller=fact.caller or gateway,
                outcome=fact.outcome or _GATEWAY_OUTCOMES[fact.type],
                comment=fact.comment,
                # Masked again here, as for requests: secrets never reach the database.
                arguments=redact_arguments(fact.arguments),
                policy_key=fact.policy_key,
                # A gateway's clock may run ahead; the log never records the future.
                time=min(at, now),
                arguments_hash=fact.arguments_hash,
            )
        )
    events = audit.append_events(session, drafts)
    session.commit()
    return events
