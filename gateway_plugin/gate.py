"""The approval gate: what happens to one tool call, independent of any gateway.

`decide` gives the `verdict` of a call (allow, deny, held, approved with which
arguments, rejected, expired); a host matches on it, or hands `handle` its way to
run the call (`forward`, and `forward_with` for the arguments an approver
changed) and gets the `CallToolResult` the agent should see. `GatewayRuntime`
(`runtime`) builds one gate per identity for every host.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from mcp_types import CallToolResult

from gateway_plugin import edits, messages
from gateway_plugin.audit_reporter import AuditReporter, FactType
from gateway_plugin.calls import Forward, ForwardWith, ProgressFn, ToolCall, error_result
from gateway_plugin.decision_stream import DecisionStream, await_decision
from gateway_plugin.outcomes import OutcomeReports
from gateway_plugin.policy import (
    Evaluation,
    Policy,
    RateLimiter,
    canonical_arguments_hash,
    redact_arguments,
)
from gateway_plugin.policy.results import PreviewSpec
from gateway_plugin.preview_call import SIDE_CALL, SideCall, preview_call
from gateway_plugin.service_client import (
    ServiceClient,
    ServiceRefused,
    ServiceUnavailable,
)
from gateway_plugin.verdict import (
    Allow,
    Approved,
    Ask,
    Deny,
    Expired,
    Held,
    Rejected,
    Screened,
    Verdict,
    refusal,
)
from gateway_plugin.wire import ApprovalRequestView, CreateRequest, GrantUseRequest, Preview

__all__ = [
    "DEFAULT_HOLD_SECONDS",
    "ApprovalGate",
    "Forward",
    "ForwardWith",
    "PolicyFeed",
    "ProgressFn",
    "ToolCall",
    "error_result",
]

log = logging.getLogger(__name__)

# Where the gate reads the policy in force at each call (`PolicySource`, the service's state).
PolicyFeed = Callable[[], Policy]
_Answer = TypeVar("_Answer")

DEFAULT_HOLD_SECONDS = 50.0


def _failure(tool: str, exc: Exception) -> str:
    """What the agent reads when the approval path failed (the call is refused)."""
    if isinstance(exc, ServiceUnavailable):
        return messages.unreachable(tool, str(exc))
    if isinstance(exc, ServiceRefused):  # e.g. its policy differs from ours: fail closed
        return messages.not_queued(tool, str(exc))
    # Fail closed whatever the host does with exceptions (ContextForge may be set to
    # ignore a plugin's errors and run the call).
    log.error("the approval path of %s failed; refusing the call", tool, exc_info=exc)
    return messages.internal_error(tool, type(exc).__name__)


class ApprovalGate:
    """Applies a policy to tool calls, holding risky ones for a human decision."""

    def __init__(
        self,
        policy: Policy | PolicyFeed,
        service: ServiceClient,
        *,
        agent: str | None = None,
        token: str = "",
        hold_seconds: float = DEFAULT_HOLD_SECONDS,
        decisions: DecisionStream | None = None,
        audit: AuditReporter | None = None,
        audit_allowed: bool = False,
    ) -> None:
        self._policy: PolicyFeed = policy if callable(policy) else (lambda: policy)
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
        self.outcomes = OutcomeReports(service)
        self._agent = agent
        # Without --agent the grant is the token; rate limits key on a digest of
        # it so no secret sits in memory twice, and no network call is needed.
        self._grant_key = agent or "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]

    @property
    def policy(self) -> Policy:
        """The policy in force now, as the gate's feed has it."""
        return self._policy()

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

    def screen(self, call: ToolCall, evaluation: Evaluation | None = None) -> Screened:
        """Settle what needs no human: Allow, Deny, else Ask (a person must be involved).
        Counts the call against its rate limits.

        `evaluation` is `evaluate(call)` when the caller already has it."""
        if evaluation is None:
            evaluation = self.evaluate(call)
        if evaluation.hidden:
            self._record(call, evaluation, "policy.denied", "hidden", evaluation.reason)
            return Deny(messages.hidden(call.tool))
        if evaluation.action == "deny":
            self._record(call, evaluation, "policy.denied", "denied", evaluation.reason)
            return Deny(messages.denied(call.tool, evaluation.matched_key, evaluation.reason))
        violation = self.limiter.check_and_consume(
            evaluation.limits, grant=call.caller or self._grant_key, session=call.session
        )
        if violation is not None:
            self._record(call, evaluation, "policy.rate_limited", "rate_limited", violation.message)
            return Deny(
                messages.rate_limited(call.tool, violation.message, violation.retry_after_seconds)
            )
        if evaluation.action == "allow":
            if evaluation.audit or self.audit_allowed:
                self._record(call, evaluation, "call.allowed", "allowed", evaluation.reason)
            return Allow()
        return Ask(evaluation)

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

    async def decide(
        self,
        call: ToolCall,
        progress: ProgressFn | None = None,
        evaluation: Evaluation | None = None,
        *,
        hold: float | None = None,
        can_edit: bool = True,
    ) -> Verdict:
        """The verdict on `call`: screened, then (if a human must decide) queued and held
        up to `hold` seconds (default: the policy entry's, else the gate's). An approval
        is claimed for this one run. Never raises: a failure is a Deny (fail closed).

        `can_edit`: whether the host can run other arguments than the agent sent; if not,
        an approval of changed arguments is refused before it is claimed."""
        screened = self.screen(call, evaluation)
        if not isinstance(screened, Ask):
            return screened
        if screened.evaluation.action == "confirm" and screened.evaluation.approval is None:
            # Only a host that can ask the person at the client confirms (SignoffExtension).
            return Deny(messages.cannot_confirm(call.tool))
        work = self.hold(call, screened.evaluation, progress, hold, can_edit=can_edit)
        return await self.guarded(call.tool, work)

    async def handle(
        self,
        call: ToolCall,
        forward: Forward,
        progress: ProgressFn | None = None,
        evaluation: Evaluation | None = None,
        forward_with: ForwardWith | None = None,
    ) -> CallToolResult:
        """`decide`, then `carry_out` the verdict with the host's way to run the call."""
        can_edit = forward_with is not None
        verdict = await self.decide(call, progress, evaluation, can_edit=can_edit)
        return await self.carry_out(verdict, forward, forward_with)

    async def carry_out(
        self, verdict: Verdict, forward: Forward, forward_with: ForwardWith | None = None
    ) -> CallToolResult:
        """What the agent gets for `verdict`: the call run (with the approved arguments
        and the note of what changed, when an approver changed them), else the refusal.

        A host that cannot run other arguments gives no `forward_with`; an approval of
        changed arguments is then refused, never run as the agent made it."""
        match verdict:
            case Allow():
                return await forward()
            case Approved(request=request, arguments=arguments, change=change):
                if change is None:
                    result = await forward()
                elif forward_with is None:
                    return refusal(Deny(messages.edit_unsupported(request)))
                else:
                    result = change.annotate(await forward_with(arguments))
                # The agent gets its result now; the outcome is recorded behind its back.
                self.outcomes.report(request, result)
                return result
            case Deny() | Held() | Rejected() | Expired():
                return refusal(verdict)

    async def guarded(self, tool: str, work: Awaitable[_Answer]) -> _Answer | Deny:
        """Run the approval path `work`; any failure is a Deny (fail closed)."""
        try:
            return await work
        except Exception as exc:
            return Deny(_failure(tool, exc))

    async def fail_closed(self, tool: str, work: Awaitable[_Answer]) -> _Answer | CallToolResult:
        """`guarded` for hosts that answer with a result: a failure is a tool error."""
        answer = await self.guarded(tool, work)
        return refusal(answer) if isinstance(answer, Deny) else answer

    async def hold(
        self,
        call: ToolCall,
        evaluation: Evaluation,
        progress: ProgressFn | None,
        hold: float | None = None,
        *,
        can_edit: bool = True,
    ) -> Verdict:
        """Hold then hand back: a grant in force, else queue, wait up to the hold, settle."""
        if evaluation.action == "require_approval" and await self.granted(call):
            return Allow()
        request = await self.open_request(call)
        wait = self.hold_for(evaluation, hold)
        request, claimed = await self.await_decision(request, wait, progress)
        if request.pending:
            return Held(request, self.service.base_url)
        return await self.settle(call, evaluation, request, claimed, can_edit=can_edit)

    def hold_for(self, evaluation: Evaluation, default: float | None = None) -> float:
        """How long a call of this policy entry is held in-band before it is handed back."""
        approval = evaluation.approval
        if approval is not None and approval.hold_seconds is not None:
            return approval.hold_seconds
        return self.hold_seconds if default is None else default

    async def caller_of(self, call: ToolCall) -> str:
        """Who makes `call`: the host's authenticated agent, else the gate's default."""
        return call.caller or await self.caller_name()

    async def granted(self, call: ToolCall) -> bool:
        """Whether a grant in force covers `call` (then it runs at once, with no request).

        The service decides and counts the use (and writes grant.used), so a revocation
        or a used-up max_uses holds at every gateway from the next call on."""
        grant = await self.service.use_grant(
            GrantUseRequest(
                tool=call.tool,
                server=call.server,
                caller=await self.caller_of(call),
                arguments=dict(call.arguments),
            )
        )
        return grant is not None

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
        """The rule's preview of `call` (`preview_call`); never raises."""
        return await preview_call(
            self.policy,
            self.limiter,
            spec=spec,
            arguments=dict(call.arguments),
            server=call.server,
            grant=caller or self._grant_key,
            session=call.session,
            side_call=side_call,
        )

    async def settle(
        self,
        call: ToolCall,
        evaluation: Evaluation,
        request: ApprovalRequestView,
        claimed: bool,
        *,
        can_edit: bool = True,
    ) -> Approved | Rejected | Expired | Deny:
        """The verdict on a decided request: approved (its approval claimed for this run,
        with the arguments the service approved), rejected or expired.

        The approved arguments come from the service's answer to the claim only; a
        mismatch with their hash refuses the call."""
        if not request.allowed:
            return Expired(request) if request.status == "expired" else Rejected(request)
        if request.approved_arguments is not None and not can_edit:
            return Deny(messages.edit_unsupported(request))
        if not claimed:
            try:
                request = await self.service.claim(request.id)
            except ServiceRefused as exc:
                if exc.code == "already_claimed":
                    return Deny(messages.approval_used(request))
                if exc.code == "approval_stale":
                    return Deny(messages.approval_stale(request))
                raise ServiceUnavailable(str(exc)) from exc
        try:
            arguments, change = edits.approved_run(request, call.arguments, evaluation.redact)
        except edits.EditMismatch as exc:
            return Deny(messages.internal_error(call.tool, str(exc)))
        if change is not None and not can_edit:  # edited between the read and the claim
            return Deny(messages.edit_unsupported(request))
        return Approved(request, arguments, change)

    async def await_decision(
        self, request: ApprovalRequestView, hold: float, progress: ProgressFn | None
    ) -> tuple[ApprovalRequestView, bool]:
        """`decision_stream.await_decision` with this gate's service and decision push."""
        return await await_decision(self.service, self.decisions, request, hold, progress)

    async def drain(self, timeout: float = 2.0) -> None:
        """Give outcome reports still in flight up to `timeout` seconds (on shutdown)."""
        await self.outcomes.drain(timeout)
