"""The approval gate: what happens to one tool call, independent of any gateway.

Hosts (the built-in MCP proxy, a FastMCP middleware, a ContextForge plugin) hand
the gate a `ToolCall` and a `forward` coroutine that runs the real call; the gate
returns the `CallToolResult` the agent should see.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from mcp_types import CallToolResult, TextContent

from gateway_plugin import edits, messages
from gateway_plugin.audit_reporter import AuditReporter, FactType
from gateway_plugin.policy import (
    Evaluation,
    Policy,
    RateLimiter,
    canonical_arguments_hash,
    redact_arguments,
)
from gateway_plugin.policy.preview import (
    PREVIEW_ERROR_MAX_CHARS,
    PreviewTemplateError,
    cap_text,
    fill,
)
from gateway_plugin.policy.results import PreviewSpec
from gateway_plugin.service_client import (
    ServiceClient,
    ServiceRefused,
    ServiceUnavailable,
)
from gateway_plugin.wire import ApprovalRequestView, CreateRequest, GrantUseRequest, Preview

if TYPE_CHECKING:
    from gateway_plugin.decision_stream import DecisionStream

log = logging.getLogger(__name__)

Forward = Callable[[], Awaitable[CallToolResult]]
# Runs the call with other arguments (those an approver changed); None: the host cannot.
ForwardWith = Callable[[dict[str, Any]], Awaitable[CallToolResult]]
# Runs another tool on the held call's own upstream session (for previews).
SideCall = Callable[[str, dict[str, Any]], Awaitable[CallToolResult]]
# Set by a host around each tool call it can make side calls for (the built-in proxy,
# see `proxy.forwarding`): the gate makes a rule's preview call through it. Unset, a
# preview is attached as failed.
SIDE_CALL: ContextVar[SideCall | None] = ContextVar("signoff_side_call", default=None)
ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]
_Answer = TypeVar("_Answer")

DEFAULT_HOLD_SECONDS = 50.0
# Long enough to be cheap, short enough that clients which reset their timeout
# on progress see a heartbeat well inside common 60 s limits.
PROGRESS_INTERVAL_SECONDS = 10.0


@dataclass(frozen=True)
class ToolCall:
    """One tools/call as the gate sees it."""

    tool: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    server: str = ""
    # The grant: who is calling (shown to approvers; never allowed to approve).
    caller: str = ""
    session: str | None = None


def error_result(text: str) -> CallToolResult:
    """A tool error the agent can read."""
    return CallToolResult(content=[TextContent(text=text)], is_error=True)


def _summary(result: CallToolResult, limit: int = 500) -> str:
    texts = [block.text for block in result.content if isinstance(block, TextContent)]
    return " ".join(texts)[:limit]


def _preview_text(result: CallToolResult) -> str:
    """A tool result as text: text blocks as they are, other blocks named."""
    parts = [
        block.text if isinstance(block, TextContent) else f"[{block.type} content]"
        for block in result.content
    ]
    return "\n".join(parts)


def _failed_preview(error: str) -> Preview:
    return Preview(status="failed", error=error[:PREVIEW_ERROR_MAX_CHARS])


class ApprovalGate:
    """Applies a policy to tool calls, holding risky ones for a human decision."""

    # Whether `forward` returns the real result, so its outcome can be recorded.
    reports_outcomes = True

    def __init__(
        self,
        policy: Policy,
        service: ServiceClient,
        *,
        agent: str | None = None,
        token: str = "",
        hold_seconds: float = DEFAULT_HOLD_SECONDS,
        decisions: DecisionStream | None = None,
        audit: AuditReporter | None = None,
        audit_allowed: bool = False,
    ) -> None:
        self.policy = policy
        self.service = service
        # Where calls settled without a human are reported (None: not reported), and
        # whether allowed calls are too (else only those whose entry says `audit: true`).
        self.audit = audit
        self.audit_allowed = audit_allowed
        # Decisions pushed over the websocket; None (or disconnected) means long-poll.
        self.decisions = decisions
        self.hold_seconds = hold_seconds
        self.limiter = RateLimiter()
        # (server, tool) -> (policy, answer) for `allows_outright`; a reloaded policy starts afresh.
        self._outright: dict[tuple[str, str], tuple[Policy, bool]] = {}
        self._pending_reports: set[asyncio.Task[None]] = set()
        self._agent = agent
        # Without --agent the grant is the token; rate limits key on a digest of
        # it so no secret sits in memory twice, and no network call is needed.
        self._grant_key = agent or "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]

    def replace_policy(self, policy: Policy) -> None:
        """Swap in a newly loaded policy (counters are kept)."""
        self.policy = policy

    async def caller_name(self) -> str:
        """The caller identity: --agent, else the gateway token's name (asked once)."""
        if self._agent is None:
            self._agent = (await self.service.whoami()).name
        return self._agent

    def visible(self, tool: str, server: str = "") -> bool:
        """False for tools the policy hides from tools/list."""
        return not self.policy.is_hidden(tool, server or None)

    def allows_outright(self, tool: str, server: str = "") -> bool:
        """True when `screen` forwards every call of `tool` untouched: an allow that reads
        no arguments, counts no limit and records nothing. Remembered per policy, so the
        fast path answers such calls without building anything."""
        policy = self.policy
        known = self._outright.get((server, tool))
        if known is not None and known[0] is policy:
            return known[1]
        evaluation = policy.evaluate(tool, None, server or None)
        outright = (
            not policy.reads_arguments(tool, server or None)
            and evaluation.action == "allow"
            and not evaluation.hidden
            and not evaluation.limits
            and not (evaluation.audit or self.audit_allowed)
        )
        if len(self._outright) >= 4096:  # bounded, whatever tool names agents send
            self._outright.clear()
        self._outright[(server, tool)] = (policy, outright)
        return outright

    def evaluate(self, call: ToolCall) -> Evaluation:
        """The current policy's decision for `call` (pure: consumes no rate limit)."""
        return self.policy.evaluate(call.tool, call.arguments, call.server or None)

    def needs_approval(self, call: ToolCall, evaluation: Evaluation | None = None) -> bool:
        """True when the policy wants a human for `call` (pure: consumes no rate limit)."""
        if evaluation is None:
            evaluation = self.evaluate(call)
        return evaluation.action == "require_approval" and not evaluation.hidden

    def screen(
        self, call: ToolCall, evaluation: Evaluation | None = None
    ) -> CallToolResult | Evaluation | None:
        """Settle what needs no human: None to forward, a tool error to refuse, else the
        evaluation that asks for approval. Counts the call against its rate limits.

        `evaluation` is `evaluate(call)` when the caller already has it."""
        if evaluation is None:
            evaluation = self.evaluate(call)
        if evaluation.hidden:
            self._record(call, evaluation, "policy.denied", "hidden", evaluation.reason)
            return error_result(messages.hidden(call.tool))
        if evaluation.action == "deny":
            self._record(call, evaluation, "policy.denied", "denied", evaluation.reason)
            return error_result(
                messages.denied(call.tool, evaluation.matched_key, evaluation.reason)
            )
        violation = self.limiter.check_and_consume(
            evaluation.limits, grant=call.caller or self._grant_key, session=call.session
        )
        if violation is not None:
            self._record(call, evaluation, "policy.rate_limited", "rate_limited", violation.message)
            return error_result(
                messages.rate_limited(call.tool, violation.message, violation.retry_after_seconds)
            )
        if evaluation.action == "allow":
            if evaluation.audit or self.audit_allowed:
                self._record(call, evaluation, "call.allowed", "allowed", evaluation.reason)
            return None
        return evaluation

    def _record(
        self,
        call: ToolCall,
        evaluation: Evaluation,
        fact: FactType,
        outcome: str,
        comment: str | None,
        arguments_hash: str | None = None,
    ) -> None:
        """Queue a settled call for the audit log (a sync enqueue; never blocks or raises)."""
        if self.audit is None:
            return
        try:
            arguments = redact_arguments(dict(call.arguments), evaluation.redact)
        except Exception:  # an odd argument value must not fail the call
            log.exception("could not mask the arguments of %s for the audit log", call.tool)
            arguments = {}
        self.audit.report(
            fact,
            tool=call.tool,
            server=call.server,
            # Empty: the service records the gateway token's name, the default caller.
            caller=call.caller or self._agent or "",
            arguments=arguments,
            policy_key=evaluation.matched_key,
            outcome=outcome,
            comment=comment,
            arguments_hash=arguments_hash,
        )

    def record_confirmation(self, call: ToolCall, evaluation: Evaluation, confirmed: bool) -> None:
        """Audit the answer of the person at the client to a `confirm` rule (never a vote)."""
        if confirmed:
            fact: FactType = "call.confirmed"
            outcome, comment = "confirmed", "confirmed by the person at the client"
        else:
            fact, outcome, comment = "call.declined", "declined", "declined at the client"
        hashed = canonical_arguments_hash(dict(call.arguments))
        self._record(call, evaluation, fact, outcome, comment, arguments_hash=hashed)

    def needs_human(self, evaluation: Evaluation) -> bool:
        """True when a person must be involved: an approver, or the person at the client."""
        return evaluation.action in ("require_approval", "confirm") and not evaluation.hidden

    async def handle(
        self,
        call: ToolCall,
        forward: Forward,
        progress: ProgressFn | None = None,
        evaluation: Evaluation | None = None,
        forward_with: ForwardWith | None = None,
    ) -> CallToolResult:
        """Decide what happens to `call`; runs `forward` only when the policy and humans allow.

        `evaluation` is `evaluate(call)` when the caller already has it. `forward_with`
        runs the call with the arguments an approver changed; a host that cannot gives
        None, and such an approval is refused rather than run as made."""
        verdict = self.screen(call, evaluation)
        if verdict is None:
            return await forward()
        if isinstance(verdict, CallToolResult):
            return verdict
        if verdict.action == "confirm" and verdict.approval is None:
            # Only a host that can ask the person at the client confirms (SignoffExtension).
            return error_result(messages.cannot_confirm(call.tool))
        return await self.fail_closed(
            call.tool, self.hold_then_forward(call, verdict, forward, progress, forward_with)
        )

    async def fail_closed(self, tool: str, work: Awaitable[_Answer]) -> _Answer | CallToolResult:
        """Run the approval path `work`; any failure refuses the call with a tool error."""
        try:
            return await work
        except ServiceUnavailable as exc:
            return error_result(messages.unreachable(tool, str(exc)))
        except ServiceRefused as exc:  # e.g. its policy differs from ours: fail closed
            return error_result(messages.not_queued(tool, str(exc)))
        except Exception as exc:
            # Fail closed whatever the host does with exceptions (ContextForge may be set
            # to ignore a plugin's errors and run the call).
            log.exception("the approval path of %s failed; refusing the call", tool)
            return error_result(messages.internal_error(tool, type(exc).__name__))

    async def hold_then_forward(
        self,
        call: ToolCall,
        evaluation: Evaluation,
        forward: Forward,
        progress: ProgressFn | None,
        forward_with: ForwardWith | None = None,
    ) -> CallToolResult:
        """Hold then hand back: queue, wait up to `hold`, then run, refuse, or say it is pending."""
        if evaluation.action == "require_approval":
            granted = await self.run_granted(call, forward)
            if granted is not None:
                return granted
        request = await self.open_request(call)
        request, claimed = await self.await_decision(request, self.hold_for(evaluation), progress)
        if request.pending:
            return error_result(messages.pending(request, self.service.base_url))
        return await self.run_decided(
            request, claimed, forward, edited=_Edited(call, evaluation, forward_with)
        )

    def hold_for(self, evaluation: Evaluation) -> float:
        """How long a call of this policy entry is held in-band before it is handed back."""
        approval = evaluation.approval
        if approval is not None and approval.hold_seconds is not None:
            return approval.hold_seconds
        return self.hold_seconds

    async def caller_of(self, call: ToolCall) -> str:
        """Who makes `call`: the host's authenticated agent, else the gate's default."""
        return call.caller or await self.caller_name()

    async def run_granted(self, call: ToolCall, forward: Forward) -> CallToolResult | None:
        """Run `call` at once under a grant in force, or None when no grant covers it.

        The service decides and counts the use (and writes grant.used), so a revocation
        or a used-up max_uses holds at every gateway from the next call on; no request
        is made."""
        grant = await self.service.use_grant(
            GrantUseRequest(
                tool=call.tool,
                server=call.server,
                caller=await self.caller_of(call),
                arguments=dict(call.arguments),
            )
        )
        return None if grant is None else await forward()

    async def open_request(self, call: ToolCall) -> ApprovalRequestView:
        """Queue `call` for approval (an identical pending call attaches to its request)."""
        arguments = dict(call.arguments)
        caller = await self.caller_of(call)
        approval = self.evaluate(call).approval
        preview = None
        if approval is not None and approval.preview is not None:
            preview = await self.preview(call, approval.preview, SIDE_CALL.get(), caller)
        # The call as it will run, unmasked: the service hashes exactly these arguments
        # (and masks them before storing), and takes approvers, quorum and timeout from
        # its own policy. The hash we send makes it refuse if we disagree on the call.
        return await self.service.create(
            CreateRequest(
                tool=call.tool,
                server=call.server,
                caller=caller,
                session_id=call.session,
                arguments=arguments,
                arguments_hash=canonical_arguments_hash(arguments),
                preview=preview,
            )
        )

    async def preview(
        self, call: ToolCall, spec: PreviewSpec, side_call: SideCall | None, caller: str
    ) -> Preview:
        """Make the rule's preview call, or say why it failed; never raises (a failed
        preview is shown as failed and never blocks the request).

        The preview call is held to the policy as if the agent had made it: it runs only
        when the policy allows it with the filled-in arguments, within its limits."""
        if side_call is None:
            return _failed_preview("this gateway host cannot make preview calls")
        try:
            arguments = fill(spec.arguments, call.arguments)
        except PreviewTemplateError as exc:
            return _failed_preview(str(exc))
        evaluation = self.policy.evaluate(spec.tool, arguments, call.server or None)
        if evaluation.hidden or evaluation.action != "allow":
            action = "hide" if evaluation.hidden else evaluation.action
            return _failed_preview(f"the policy says {action} for {spec.tool}; not previewed")
        violation = self.limiter.check_and_consume(
            evaluation.limits, grant=caller or self._grant_key, session=call.session
        )
        if violation is not None:
            return _failed_preview(f"{spec.tool} is rate limited: {violation.message}")
        try:
            with anyio.fail_after(spec.timeout_seconds):
                result = await side_call(spec.tool, arguments)
        except TimeoutError:
            return _failed_preview(f"{spec.tool} did not answer within {spec.timeout_seconds:g}s")
        except Exception as exc:  # whatever the upstream does, the request goes ahead
            return _failed_preview(f"{spec.tool} failed: {type(exc).__name__}: {exc}")
        text = cap_text(_preview_text(result))
        if result.is_error:
            return _failed_preview(f"{spec.tool} returned an error: {text}")
        return Preview(status="ok", text=text)

    async def run_decided(
        self,
        request: ApprovalRequestView,
        claimed: bool,
        forward: Forward,
        edited: _Edited | None = None,
    ) -> CallToolResult:
        """Run a decided request's call once (claiming its approval), or refuse it.

        `edited` says how to run the arguments an approver changed; without it (or its
        `forward_with`) such an approval is refused, never run as the agent made it."""
        if not request.allowed:
            return error_result(messages.refused(request))
        can_edit = edited is not None and edited.forward_with is not None
        if not claimed:
            if request.approved_arguments is not None and not can_edit:
                return error_result(messages.edit_unsupported(request))
            outcome = await self._claim(request)
            if isinstance(outcome, CallToolResult):
                return outcome
            request = outcome
        if request.approved_arguments is not None:
            if edited is None or edited.forward_with is None:
                return error_result(messages.edit_unsupported(request))
            result = await self._run_edited(edited, request)
        else:
            result = await forward()
        if self.reports_outcomes:
            # The agent gets its result now; the outcome is recorded behind its back.
            self._background(self._report(request, result))
        return result

    async def _claim(self, request: ApprovalRequestView) -> CallToolResult | ApprovalRequestView:
        """Use the approval for this execution: the request as claimed (with the arguments
        approved), or a tool error when another call used it."""
        try:
            return await self.service.claim(request.id)
        except ServiceRefused as exc:
            if exc.code == "already_claimed":
                return error_result(messages.approval_used(request))
            if exc.code == "approval_stale":
                return error_result(messages.approval_stale(request))
            raise ServiceUnavailable(str(exc)) from exc

    async def _run_edited(self, edited: _Edited, request: ApprovalRequestView) -> CallToolResult:
        """Run the call with the arguments the approver approved instead of the agent's."""
        assert edited.forward_with is not None
        call, redact = edited.call, edited.evaluation.redact
        try:
            arguments = edits.approved_call_arguments(request, call.arguments, redact)
        except edits.EditMismatch as exc:
            return error_result(messages.internal_error(call.tool, str(exc)))
        result = await edited.forward_with(arguments)
        return edits.annotate(result, request, call.arguments, redact)

    async def await_decision(
        self, request: ApprovalRequestView, hold: float, progress: ProgressFn | None
    ) -> tuple[ApprovalRequestView, bool]:
        """Wait in-band for a decision for at most `hold` seconds, with progress heartbeats.

        Returns the request and whether this call already claimed its approval.
        """
        start = anyio.current_time()
        while request.pending:
            elapsed = anyio.current_time() - start
            remaining = hold - elapsed
            if remaining <= 0:
                break
            if progress is not None:
                await progress(
                    elapsed,
                    hold,
                    f"waiting for approval of {request.tool} (request {request.id})",
                )
            step = min(remaining, PROGRESS_INTERVAL_SECONDS)
            if self.decisions is not None and self.decisions.connected:
                event = await self.decisions.wait_for(request.id, step)
                if event is not None and event.get("status") == "approved":
                    # An event alone never runs a call, but the claim is checked by the
                    # service: it succeeds only if the request really allows the call.
                    try:
                        return await self.service.claim(request.id), True
                    except ServiceRefused:
                        pass  # not approved after all, or already used: re-read below
                request = await self.service.get(request.id)
            else:
                request = await self.service.wait(request.id, step)
        return request, False

    async def drain(self, timeout: float = 2.0) -> None:
        """Give outcome reports still in flight up to `timeout` seconds (on shutdown)."""
        if self._pending_reports:
            with anyio.move_on_after(timeout):
                await asyncio.gather(*self._pending_reports, return_exceptions=True)

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        # The loop only keeps weak references to tasks.
        self._pending_reports.add(task)
        task.add_done_callback(self._pending_reports.discard)

    async def _report(self, request: ApprovalRequestView, result: CallToolResult) -> None:
        # The call already ran: a failure to record its outcome must not hide the result.
        try:
            await self.service.report_outcome(
                request.id, is_error=result.is_error, summary=_summary(result)
            )
        except (ServiceUnavailable, ServiceRefused) as exc:
            log.warning("could not record the outcome of request %s: %s", request.id, exc)


@dataclass(frozen=True)
class _Edited:
    """What running an approver's changed arguments needs: the call as the agent made it,
    its evaluation (what is masked), and the host's way to run other arguments."""

    call: ToolCall
    evaluation: Evaluation
    forward_with: ForwardWith | None
