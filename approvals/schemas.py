"""Shapes of the JSON that crosses the HTTP API."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError, PydanticSerializationError

from approvals.models import RequestStatus
from approvals.request_store import RequestRecord, VoteRecord
from gateway_plugin.policy.preview import PREVIEW_ERROR_MAX_CHARS, cap_text

Channel = Literal["api", "cli", "dashboard", "slack", "gateway", "sweeper"]


# What the service takes from its own policy: a client that sends one of these is
# refused (422 set_by_policy) rather than silently overruled, so an old gateway's
# operator learns that the service now decides.
POLICY_FIELDS = (
    "approvers",
    "approver_group",
    "quorum",
    "timeout_seconds",
    "on_timeout",
    "reason",
    "policy_key",
)


class RequestPreview(BaseModel):
    """What a rule's preview call showed approvers, or why it failed.

    A gateway's text is capped here too (64 KiB of UTF-8, with a visible mark), whatever
    the gateway did; display only, never hashed."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["ok", "failed"]
    text: str | None = None
    error: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> RequestPreview:
        if self.status == "ok" and self.error is not None:
            raise ValueError("an ok preview carries no error")
        if self.status == "failed" and not self.error:
            raise ValueError("a failed preview says why in error")
        if self.text is not None:
            self.text = cap_text(self.text)
        if self.error is not None:
            self.error = self.error[:PREVIEW_ERROR_MAX_CHARS]
        return self


class RequestCreate(BaseModel):
    """What a gateway sends when it suspends a tool call: the call, nothing about its approval.

    The service computes the arguments hash and takes approvers, quorum, timeout and
    reason from its own policy (approvals/lifecycle `create_request`).
    """

    model_config = ConfigDict(extra="forbid")

    tool: str = Field(min_length=1, max_length=255)
    server: str = Field(default="", max_length=255)
    # The identity the gateway authenticated (its --agent, or the agent token's name).
    caller: str = Field(min_length=1, max_length=255)
    session_id: str | None = Field(default=None, max_length=255)
    # The arguments exactly as the call carries them: the service hashes these and
    # masks secret-looking and `redact`ed values before storing them.
    arguments: dict[str, Any] = Field(default_factory=dict)
    # Optional: the gateway's own hash of `arguments`; it must agree with the service's.
    arguments_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    # What the rule's preview call showed, made by the gateway before it asked.
    preview: RequestPreview | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_policy_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            sent = [name for name in POLICY_FIELDS if name in data]
            if sent:
                raise PydanticCustomError(
                    "set_by_policy",
                    "{fields} {verb} set by the service's policy; do not send {them}",
                    {
                        "fields": ", ".join(sent),
                        "verb": "is" if len(sent) == 1 else "are",
                        "them": "it" if len(sent) == 1 else "them",
                    },
                )
        return data


class DecisionCreate(BaseModel):
    """An approver's decision on a request."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    comment: str | None = Field(default=None, max_length=4000)
    # The arguments to run instead of the agent's (approve only; the rule must be editable).
    arguments: dict[str, Any] | None = None
    # The hash of the arguments the approver looked at: the vote is refused (409) if the
    # arguments that would run have been changed since.
    arguments_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class CancelCreate(BaseModel):
    """Optional body of POST /requests/{id}/cancel."""

    model_config = ConfigDict(extra="forbid")

    # The agent itself withdrew the call (MCP tasks/cancel): the caller is the actor. Only
    # the creating gateway may say so, about the caller it reported at create.
    by_caller: bool = False


class OutcomeCreate(BaseModel):
    """The result of the forwarded call, reported by the gateway."""

    model_config = ConfigDict(extra="forbid")

    is_error: bool
    summary: str | None = Field(default=None, max_length=4000)


class DecisionPublic(BaseModel):
    approver: str
    decision: str
    comment: str | None
    channel: str
    created_at: datetime


class OutcomePublic(BaseModel):
    is_error: bool
    summary: str | None
    at: datetime | None


class EscalationPublic(BaseModel):
    """One escalation step of a request: from `at` on, `group`'s `members` may decide too."""

    group: str
    members: list[str]
    after_seconds: float
    at: datetime
    # True once the service announced the step (notified the group).
    announced: bool


class RequestPublic(BaseModel):
    """A request as every client sees it."""

    id: str
    status: RequestStatus
    # True when the call may run: approved, or expired with on_timeout "allow".
    allowed: bool
    tool: str
    server: str
    caller: str
    # The name of the gateway token that created the request: the only one that may
    # wait on, claim, report on or cancel it.
    gateway: str
    session_id: str | None
    # The arguments as the agent sent them (masked), and their hash.
    arguments: dict[str, Any]
    arguments_hash: str
    # Whether approvers may change the arguments before approving (the rule's `editable`).
    editable: bool = True
    # Set once an approver changed the arguments: what runs instead, its hash, and who.
    approved_arguments: dict[str, Any] | None = None
    approved_arguments_hash: str | None = None
    edited_by: str | None = None
    policy_key: str | None
    reason: str | None
    approver_group: str | None
    approvers: list[str]
    quorum: int
    approvals: int
    on_timeout: str
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    comment: str | None
    channel: str | None
    claimed_at: datetime | None
    outcome: OutcomePublic | None
    # What the rule's read-only preview call showed (masked like the arguments), if any.
    preview: RequestPreview | None = None
    decisions: list[DecisionPublic]
    # From the policy at creation: how often approvers are reminded, who is added when.
    remind_every_seconds: float | None = None
    escalations: list[EscalationPublic] = []

    @classmethod
    def build(cls, request: RequestRecord, decisions: Sequence[VoteRecord]) -> RequestPublic:
        """Assemble the public view of a stored request and its votes."""
        outcome = None
        if request.outcome_is_error is not None:
            outcome = OutcomePublic(
                is_error=request.outcome_is_error,
                summary=request.outcome_summary,
                at=request.outcome_at,
            )
        return cls(
            id=request.id,
            status=RequestStatus(request.status),
            allowed=request.allows_call(),
            tool=request.tool,
            server=request.server,
            caller=request.caller,
            gateway=request.created_by,
            session_id=request.session_id,
            arguments=request.arguments,
            arguments_hash=request.arguments_hash,
            editable=request.editable,
            approved_arguments=request.approved_arguments,
            approved_arguments_hash=request.approved_arguments_hash,
            edited_by=request.edited_by,
            policy_key=request.policy_key,
            reason=request.reason,
            approver_group=request.approver_group,
            approvers=list(request.approvers),
            quorum=request.quorum,
            approvals=request.approvals_count,
            on_timeout=request.on_timeout,
            created_at=request.created_at,
            expires_at=request.expires_at,
            decided_at=request.decided_at,
            decided_by=request.decided_by,
            comment=request.decision_comment,
            channel=request.decision_channel,
            claimed_at=request.claimed_at,
            outcome=outcome,
            preview=RequestPreview.model_validate(request.preview) if request.preview else None,
            decisions=[
                DecisionPublic(
                    approver=d.approver,
                    decision=d.decision,
                    comment=d.comment,
                    channel=d.channel,
                    created_at=d.created_at,
                )
                for d in decisions
            ],
            remind_every_seconds=request.remind_every_seconds,
            escalations=[
                EscalationPublic(
                    group=step["group"],
                    members=list(step["members"]),
                    after_seconds=step["after_seconds"],
                    at=request.created_at + timedelta(seconds=step["after_seconds"]),
                    announced=index < request.escalated,
                )
                for index, step in enumerate(request.escalations or ())
            ],
        )


def _scrub(value: Any) -> Any:
    """`value` with text that UTF-8 cannot carry (lone surrogates) replaced by "?"."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    return value


def printable(view: RequestPublic) -> RequestPublic:
    """`view`, or a copy whose unencodable text is replaced: a row stored before input was
    checked at the edge must not break every read of the queue."""
    try:
        view.model_dump_json()
    except PydanticSerializationError:
        return RequestPublic.model_validate(_scrub(view.model_dump()))
    return view


class RequestPage(BaseModel):
    items: list[RequestPublic]
    next_cursor: str | None


class TokenIdentity(BaseModel):
    name: str
    role: str
