"""The texts an agent reads when Signoff stops or holds a call.

They are written for the model on the other side: they name the tool and the
outcome, say who decided and why, and say what to do next.
"""

from __future__ import annotations

from gateway_plugin.wire import ApprovalRequestView


def _asked(request: ApprovalRequestView) -> str:
    people = ", ".join(request.approvers) if request.approvers else "any approver"
    if request.approver_group:
        return f"{request.approver_group} ({people})"
    return people


def denied(tool: str, key: str | None, reason: str | None) -> str:
    entry = f" (policy entry {key!r})" if key else " (policy default)"
    because = f": {reason}" if reason else ""
    return f"Signoff denied the call to {tool}{entry}{because}. The call was not run."


def hidden(tool: str) -> str:
    return f"Signoff: the tool {tool} is not available (hidden by policy). The call was not run."


def rate_limited(tool: str, message: str, retry_after: float) -> str:
    return (
        f"Signoff rate-limited the call to {tool}: {message}. "
        f"Retry after {retry_after:.0f}s. The call was not run."
    )


def unreachable(tool: str, detail: str) -> str:
    return (
        f"Signoff could not reach the approval service, so the call to {tool}, which needs "
        f"human approval, was refused and not run ({detail}). Try again later."
    )


def internal_error(tool: str, kind: str) -> str:
    return (
        f"Signoff stopped the call to {tool}, which needs human approval, on an internal "
        f"error ({kind}); Signoff ran nothing after the error. Try again later."
    )


def not_queued(tool: str, detail: str) -> str:
    return (
        f"Signoff: the approval service refused to queue the call to {tool}, which needs human "
        f"approval, so it was not run ({detail})."
    )


def pending(request: ApprovalRequestView, service_url: str) -> str:
    progress = (
        f" {request.approvals} of {request.quorum} approvals so far." if request.quorum > 1 else ""
    )
    return (
        f"Signoff: the call to {request.tool} is pending approval (request {request.id}). "
        f"Asked: {_asked(request)}.{progress} They can decide on the dashboard at "
        f"{service_url}/, in Slack, or with `signoff requests approve {request.id}`. "
        f"Retry this identical call to keep waiting: it attaches to the same request and runs "
        f"as soon as it is approved. The request expires at {request.expires_at.isoformat()}."
    )


def refused(request: ApprovalRequestView) -> str:
    comment = f' Comment: "{request.comment}"' if request.comment else ""
    tool = request.tool
    if request.status == "rejected":
        return f"Signoff: the call to {tool} was rejected by {request.decided_by}.{comment}"
    if request.status == "expired":
        return (
            f"Signoff: the call to {tool} expired without a decision from {_asked(request)} "
            f"and was denied (on_timeout: {request.on_timeout}). The call was not run."
        )
    if request.status == "cancelled":
        return f"Signoff: the approval request for {tool} was cancelled. The call was not run."
    return f"Signoff: the call to {tool} is {request.status} and was not run.{comment}"


def approval_used(request: ApprovalRequestView) -> str:
    return (
        f"Signoff: the approval of request {request.id} for {request.tool} was already used by "
        f"another identical call. Call again to ask for a new approval."
    )


def approval_stale(request: ApprovalRequestView) -> str:
    return (
        f"Signoff: the approval of request {request.id} for {request.tool} is too old to use, "
        f"so the call was not run. Call again to ask for a new approval."
    )


def cannot_confirm(tool: str) -> str:
    return (
        f"Signoff: the call to {tool} must be confirmed by the person using this client, but the "
        f"client cannot ask them (it did not declare MCP elicitation), and the policy names no "
        f"approvers to ask instead. The call was not run."
    )


def declined(tool: str) -> str:
    return f"Signoff: the person at the client declined the call to {tool}. The call was not run."


def confirm_question(tool: str, message: str | None, shown_arguments: str) -> str:
    asked = message or f"Allow the agent to call {tool}?"
    return f"{asked}\n\nTool: {tool}\nArguments: {shown_arguments}"


def approval_url_prompt(request: ApprovalRequestView) -> str:
    return (
        f"The call to {request.tool} waits for approval by {_asked(request)} (request "
        f"{request.id}). Open its page to follow it; the call continues by itself once decided."
    )


def waiting(request: ApprovalRequestView) -> str:
    """A task's status line while its request is pending."""
    who = request.approver_group or (", ".join(request.approvers) or "any approver")
    return f"waiting for approval by {who}, {request.approvals} of {request.quorum}"


def edit_unsupported(request: ApprovalRequestView) -> str:
    return (
        f"Signoff: {request.edited_by} approved the call to {request.tool} (request "
        f"{request.id}) only with changed arguments, and this gateway host cannot run a call "
        f"with other arguments than the agent sent, so nothing was run."
    )
