"""Held calls of 2026-07-28 clients: multi-round-trip results instead of the hand-back error.

A call still undecided after `hold` seconds returns an `InputRequiredResult`
whose sealed `requestState` (`resume_state`) names its approval request. The
client retries the same call with that state and the gate holds it again; once
a decision is in, the retry runs the call (claiming the approval, so it runs
once) or returns the refusal. The first such result also carries a URL
elicitation to the request's page on the dashboard, for clients that declared
URL elicitation: accepting it is consent to open a page, nothing more, and the
answer is not read. Later rounds carry only the state.

The official SDK client drives these rounds by itself (`Client.call_tool`, up
to `input_required_max_rounds` rounds), so an approval given while it retries
completes the original call.
"""

from __future__ import annotations

from mcp_types import CallToolResult, ElicitRequest, ElicitRequestURLParams, InputRequiredResult

from gateway_plugin import messages
from gateway_plugin.gate import ApprovalGate, Forward, ForwardWith, ProgressFn, ToolCall
from gateway_plugin.policy import Evaluation, canonical_arguments_hash
from gateway_plugin.proxy.context import ClientFeatures
from gateway_plugin.resume_state import EXPIRY_GRACE_SECONDS, ResumeState, StateSeal
from gateway_plugin.wire import ApprovalRequestView

__all__ = ["APPROVAL_PAGE_KEY", "ResumableHolds"]

# The key of the URL elicitation in `inputRequests`.
APPROVAL_PAGE_KEY = "signoff-approval-page"


class ResumableHolds:
    """Runs the rounds of held calls for clients that speak 2026-07-28."""

    def __init__(self, gate: ApprovalGate, seal: StateSeal) -> None:
        self.gate = gate
        self.seal = seal

    async def first_round(
        self,
        call: ToolCall,
        evaluation: Evaluation,
        progress: ProgressFn | None,
        features: ClientFeatures,
        forward: Forward,
        forward_with: ForwardWith,
    ) -> CallToolResult | InputRequiredResult:
        """Queue the call and hold it; the rounds start if no decision comes in time."""
        request = await self.gate.open_request(call)
        run = (forward, forward_with)
        return await self._round(call, evaluation, request, progress, features, False, run)

    async def next_round(
        self,
        call: ToolCall,
        evaluation: Evaluation,
        state: ResumeState,
        progress: ProgressFn | None,
        features: ClientFeatures,
        forward: Forward,
        forward_with: ForwardWith,
    ) -> CallToolResult | InputRequiredResult:
        """Continue the request a redeemed state names. What runs, if anything, is what the
        service approved for that request (its claim says), never what the retry brings."""
        assert state.request_id is not None  # held states always name their request
        request = await self.gate.service.get(state.request_id)
        run = (forward, forward_with)
        return await self._round(call, evaluation, request, progress, features, state.prompted, run)

    async def _round(
        self,
        call: ToolCall,
        evaluation: Evaluation,
        request: ApprovalRequestView,
        progress: ProgressFn | None,
        features: ClientFeatures,
        prompted: bool,
        run: tuple[Forward, ForwardWith],
    ) -> CallToolResult | InputRequiredResult:
        gate = self.gate
        request, claimed = await gate.await_decision(request, gate.hold_for(evaluation), progress)
        if not request.pending:
            verdict = await gate.settle(call, evaluation, request, claimed)
            return await gate.carry_out(verdict, *run)
        ask = features.url_elicitation and not prompted
        state = self.seal.issue(
            "held",
            tool=call.tool,
            server=call.server,
            caller=await gate.caller_of(call),
            arguments_hash=canonical_arguments_hash(dict(call.arguments)),
            request_id=request.id,
            prompted=prompted or ask,
            expires=request.expires_at.timestamp() + EXPIRY_GRACE_SECONDS,
        )
        if not ask:
            return InputRequiredResult(request_state=state)
        page = ElicitRequest(
            params=ElicitRequestURLParams(
                message=messages.approval_url_prompt(request),
                url=f"{gate.service.base_url}/requests/{request.id}",
                elicitation_id=request.id,
            )
        )
        return InputRequiredResult(input_requests={APPROVAL_PAGE_KEY: page}, request_state=state)
