"""Immutable value objects the engine hands out: approvers, limits, approval specs, evaluations."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from gateway_plugin.policy.preview import DEFAULT_PREVIEW_TIMEOUT_SECONDS

# `confirm`: the person at the client confirms the call themselves (elicitation); never a vote.
Action = Literal["allow", "deny", "require_approval", "confirm"]
Window = Literal["second", "minute", "hour", "day"]
Scope = Literal["grant", "session", "global"]
OnTimeout = Literal["deny", "allow"]
# What the service notifies about (webhook subscribers choose among these); reminded and
# escalated come from reminders and escalation.
NotificationEvent = Literal[
    "request.created",
    "request.decided",
    "request.expired",
    "request.cancelled",
    "request.reminded",
    "request.escalated",
]

WINDOW_SECONDS: dict[str, float] = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}

DEFAULT_TIMEOUT_SECONDS = 900.0


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Approver(_Frozen):
    """A person who may decide; `name` is the name of their API token."""

    name: str
    slack_user: str | None = None
    # Where email notifications go (validated at load: one plain address, no display name).
    email: str | None = None


class ApproverGroup(_Frozen):
    """A named set of approvers, optionally notified in one Slack channel."""

    name: str
    members: list[str]
    slack_channel: str | None = None
    # A Microsoft Teams Workflows / incoming webhook URL that gets the group's cards.
    teams_webhook: str | None = None


class EscalationSpec(_Frozen):
    """`after_seconds` past a request's creation with no decision, `group`'s `members`
    may decide it too (and are notified)."""

    after_seconds: float
    group: str
    members: tuple[str, ...]


class Webhook(_Frozen):
    """An HTTP endpoint the service posts signed events to.

    The signing secret is the value of the environment variable `secret_env` in
    the service's environment (never in the policy, which gateways read too)."""

    url: str
    secret_env: str
    events: tuple[NotificationEvent, ...]


class LimitSpec(_Frozen):
    """At most `max` calls per `window`, counted in bucket `counter` per `scope` key."""

    counter: str
    window: Window
    max: int
    scope: Scope = "grant"

    @property
    def window_seconds(self) -> float:
        """The window length in seconds."""
        return WINDOW_SECONDS[self.window]

    def describe(self) -> str:
        """Human form, e.g. `30 per minute per grant (counter end_codegen_session_rate)`."""
        per = "in total" if self.scope == "global" else f"per {self.scope}"
        return f"{self.max} per {self.window} {per} (counter {self.counter})"


class PreviewSpec(_Frozen):
    """A read-only call made before a held call is queued; its output is shown to approvers."""

    tool: str
    # A template: `{path}` placeholders take values from the held call's arguments.
    arguments: dict[str, Any] = {}
    timeout_seconds: float = DEFAULT_PREVIEW_TIMEOUT_SECONDS


class ApprovalSpec(_Frozen):
    """Who must approve a suspended call, how many of them, and for how long to wait."""

    group: str | None = None
    # Empty means any approver may decide.
    approvers: tuple[str, ...] = ()
    quorum: int = 1
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    on_timeout: OnTimeout = "deny"
    # None lets the gateway use its own default hold.
    hold_seconds: float | None = None
    slack_channel: str | None = None
    reason: str | None = None
    # Whether an approver may change the arguments before approving them.
    editable: bool = True
    # Notify the approvers again this often while the request is pending (None: never).
    remind_every_seconds: float | None = None
    # Ordered by `after_seconds`; each one is shorter than the timeout.
    escalations: tuple[EscalationSpec, ...] = ()
    preview: PreviewSpec | None = None


class Evaluation(_Frozen):
    """The policy's verdict on one tool call, with everything the gateway needs to enforce it."""

    action: Action
    tool: str
    server: str | None = None
    matched_key: str | None = None
    rule_index: int | None = None
    reason: str | None = None
    hidden: bool = False
    approval: ApprovalSpec | None = None
    limits: tuple[LimitSpec, ...] = ()
    redact: tuple[str, ...] = ()
    # The entry asks for allowed calls to be recorded in the audit log too.
    audit: bool = False
    # What a `confirm` rule asks the person at the client (None: a generic question).
    message: str | None = None
    trace: tuple[str, ...] = ()
