"""What the gate decided about one tool call: a closed set that every host matches on.

    match await runtime.gate.decide(call):
        case Allow():
            ...run the call as the agent made it
        case Approved(arguments=arguments, change=change):
            ...run it with `arguments`; `change` (when not None) says what the approver changed
        case Deny() | Held() | Rejected() | Expired() as refused:
            ...return refusal(refused) to the agent

`Ask` is the screen's third answer (a person must be involved) for hosts that
choose how to ask (`SignoffExtension`); `decide` never returns it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp_types import CallToolResult, TextContent

from gateway_plugin import messages
from gateway_plugin.edits import ArgumentChange
from gateway_plugin.policy import Evaluation
from gateway_plugin.wire import ApprovalRequestView

__all__ = [
    "Allow",
    "Approved",
    "Ask",
    "Deny",
    "Expired",
    "Held",
    "Refusal",
    "Rejected",
    "Screened",
    "Verdict",
    "refusal",
]


@dataclass(frozen=True)
class Allow:
    """Run the call as the agent made it: the policy allows it, or a grant in force covers it."""


@dataclass(frozen=True)
class Deny:
    """Refused without a human decision: denied, hidden, rate limited, or the approval path
    failed (service down, approval already used); `text` says which to the agent."""

    text: str


@dataclass(frozen=True)
class Held:
    """Still pending when the hold ended: the identical retry attaches to `request`."""

    request: ApprovalRequestView
    service_url: str


@dataclass(frozen=True)
class Approved:
    """Approved, and the approval claimed for this one run: run the call with `arguments`.

    `arguments` are the ones the service approved (masked values filled in from the
    agent's call); `change` is None when they are the agent's own, else what the
    approver changed, to tell the agent (`ArgumentChange.annotate`)."""

    request: ApprovalRequestView
    arguments: Mapping[str, Any]
    change: ArgumentChange | None = None


@dataclass(frozen=True)
class Rejected:
    """An approver rejected the call (or it was withdrawn); the comment goes to the agent."""

    request: ApprovalRequestView


@dataclass(frozen=True)
class Expired:
    """No decision came before the request expired; its `on_timeout` denied it."""

    request: ApprovalRequestView


@dataclass(frozen=True)
class Ask:
    """A person must be involved: an approver (`require_approval`) or the person at the
    client (`confirm`), as `evaluation` says. The rate limits were counted."""

    evaluation: Evaluation


Verdict = Allow | Deny | Held | Approved | Rejected | Expired
Refusal = Deny | Held | Rejected | Expired
Screened = Allow | Deny | Ask


def refusal(verdict: Refusal) -> CallToolResult:
    """The tool error the agent gets for a call that does not run.

    `_meta["signoff"]` names the outcome (and the request), so a program on the
    agent's side can tell a pending call from a refused one without reading text."""
    match verdict:
        case Deny(text=text):
            return CallToolResult(content=[TextContent(text=text)], is_error=True)
        case Held(request=request, service_url=url):
            return _error(messages.pending(request, url), _about(request, "pending"))
        case Rejected(request=request) | Expired(request=request):
            return _error(messages.refused(request), _about(request, request.status))


def _about(request: ApprovalRequestView, outcome: str) -> dict[str, Any]:
    return {"outcome": outcome, "request_id": request.id, "tool": request.tool}


def _error(text: str, signoff: dict[str, Any]) -> CallToolResult:
    result = CallToolResult(content=[TextContent(text=text)], is_error=True)
    return result.model_copy(update={"meta": {"signoff": signoff}})
