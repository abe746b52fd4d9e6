"""The Signoff interception point as an MCP SDK `Extension`.

Any host built on the official SDK can install it: `MCPServer(extensions=[...])`,
or a low-level server through `compose_tool_call_handler` as the built-in proxy does.

A call that needs a person takes the path the client can follow, by what it
declared for this request (`proxy.context.client_features`):

- `confirm` rules: a form elicitation (`confirm`), in rounds on 2026-07-28,
  else a classic `elicitation/create`; without elicitation, the rule's
  approvers (as `require_approval`), else a tool error;
- held calls: on 2026-07-28 the multi-round-trip rounds (`resumable`); with
  the tasks extension declared, a task (`tasks`); else hold, then hand back.

The verdicts (allow, deny, hold, run once) stay the gate's; these modules only
shape how the answer travels.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import mcp_types as types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, MISSING_REQUIRED_CLIENT_CAPABILITY

from gateway_plugin import messages
from gateway_plugin.confirm import Confirmations
from gateway_plugin.gate import ApprovalGate, Forward, ForwardWith, ToolCall, error_result
from gateway_plugin.policy import Evaluation, canonical_arguments_hash
from gateway_plugin.proxy.context import (
    TASKS_EXTENSION,
    ClientFeatures,
    caller_name,
    client_features,
    progress_reporter,
    session_key,
)
from gateway_plugin.resumable import ResumableHolds
from gateway_plugin.resume_state import InvalidResumeState, StateSeal
from gateway_plugin.tasks import TaskBoard, TaskParams
from gateway_plugin.verdict import Allow, Ask, Deny, Screened, refusal

logger = logging.getLogger(__name__)

_ALLOW = Allow()


class SignoffExtension(Extension):
    """Holds, denies or forwards each tools/call according to the Signoff policy."""

    identifier = "dev.signoff/approvals"

    def __init__(
        self, gate: ApprovalGate, *, server: str = "", seal: StateSeal | None = None
    ) -> None:
        self.gate = gate
        self.server = server
        # Without a secret of the gateway's, states are good in this process only.
        self.seal = seal = seal or StateSeal(secrets.token_hex(32))
        self.confirmations = Confirmations(gate, seal)
        self.rounds = ResumableHolds(gate, seal)
        self.tasks = TaskBoard(gate)

    def modern_extensions(self) -> dict[str, dict[str, Any]]:
        """Extensions advertised in `server/discover` (2026-07-28 clients only)."""
        return {TASKS_EXTENSION: {}}

    def methods(self) -> Sequence[MethodBinding]:
        """`tasks/get` and `tasks/cancel` of the tasks extension."""
        return (
            MethodBinding("tasks/get", TaskParams, self._get_task),
            MethodBinding("tasks/cancel", TaskParams, self._cancel_task),
        )

    async def _task_caller(self, ctx: ServerRequestContext[Any, Any]) -> str:
        if not client_features(ctx).tasks:
            raise MCPError(
                code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                message="Missing required client capability",
                data={"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}},
            )
        return caller_name(ctx) or await self.gate.caller_name()

    async def _get_task(self, ctx: ServerRequestContext[Any, Any], params: Any) -> HandlerResult:
        assert isinstance(params, TaskParams)
        return await self.tasks.get(params.task_id, await self._task_caller(ctx))

    async def _cancel_task(self, ctx: ServerRequestContext[Any, Any], params: Any) -> HandlerResult:
        assert isinstance(params, TaskParams)
        return await self.tasks.cancel(params.task_id, await self._task_caller(ctx))

    def screen_tool_call(self, name: str, arguments: Mapping[str, Any], session: str) -> Screened:
        """Settle a call without a request context when no human is needed (the fast path):
        Allow or Deny, else Ask (the call is held on the full path)."""
        gate = self.gate
        if gate.allows_outright(name, self.server):
            return _ALLOW
        call = ToolCall(tool=name, arguments=arguments, server=self.server, session=session)
        evaluation = gate.evaluate(call)
        if gate.needs_human(evaluation):
            return Ask(evaluation)
        return gate.screen(call, evaluation)

    def visible_tools(self, tools: list[types.Tool]) -> list[types.Tool]:
        """Drop the tools the policy hides."""
        return [tool for tool in tools if self.gate.visible(tool.name, self.server)]

    async def intercept_tool_call(
        self,
        params: types.CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        call = ToolCall(
            tool=params.name,
            arguments=params.arguments or {},
            server=self.server,
            # The agent's own token name under an authenticating HTTP host, else the gate's default.
            caller=caller_name(ctx) or "",
            session=session_key(ctx),
        )

        forward, forward_with = _runners(ctx, call_next, params)
        progress = progress_reporter(ctx)
        gate = self.gate
        features = client_features(ctx)
        evaluation = gate.evaluate(call)
        if not gate.needs_human(evaluation) or not (features.rounds or features.form_elicitation):
            return await gate.handle(call, forward, progress, evaluation, forward_with)
        if params.request_state is not None:
            return await self._next_round(ctx, call_next, params, call, evaluation, features)
        match gate.screen(call, evaluation):
            case Allow():
                return await forward()
            case Deny() as denied:
                return refusal(denied)
            case Ask(evaluation=asked):
                pass
        if asked.action == "confirm":
            if features.form_elicitation:
                return await self._confirm(ctx, call, asked, features, forward)
            if asked.approval is None:
                return refusal(Deny(messages.cannot_confirm(call.tool)))
            # The rule names approvers for clients that cannot be asked: they decide.
        if asked.action == "require_approval":
            granted = await gate.guarded(call.tool, gate.granted(call))
            if granted is True:
                return await forward()
            if isinstance(granted, Deny):
                return refusal(granted)
        if features.tasks:
            detached = _runners(_quiet(ctx), call_next, params)
            return await self.tasks.start(call, asked, *detached)
        if features.rounds:
            return await gate.fail_closed(
                call.tool,
                self.rounds.first_round(call, asked, progress, features, forward, forward_with),
            )
        verdict = await gate.guarded(call.tool, gate.hold(call, asked, progress))
        return await gate.carry_out(verdict, forward, forward_with)

    async def _confirm(
        self,
        ctx: ServerRequestContext[Any, Any],
        call: ToolCall,
        evaluation: Evaluation,
        features: ClientFeatures,
        forward: Forward,
    ) -> HandlerResult:
        confirmations = self.confirmations
        if features.rounds:
            return await confirmations.ask_in_rounds(call, evaluation)

        async def ask_then_settle() -> types.CallToolResult:
            accepted = await confirmations.ask_directly(ctx, call, evaluation)
            return await confirmations.settle(call, evaluation, accepted, forward)

        return await self.gate.fail_closed(call.tool, ask_then_settle())

    async def _next_round(
        self,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
        params: types.CallToolRequestParams,
        call: ToolCall,
        evaluation: Evaluation,
        features: ClientFeatures,
    ) -> HandlerResult:
        """A retry with the `requestState` of an earlier round (limits were counted then)."""
        confirm = evaluation.action == "confirm" and features.form_elicitation
        try:
            # Checked against the call it came back with, and spent.
            state = self.seal.redeem(
                params.request_state,
                kind="confirm" if confirm else "held",
                tool=call.tool,
                server=call.server,
                caller=await self.gate.caller_of(call),
                arguments_hash=canonical_arguments_hash(dict(call.arguments)),
            )
        except InvalidResumeState as exc:
            logger.warning("refused the requestState of a %s call: %s", call.tool, exc)
            raise MCPError(
                code=INVALID_PARAMS,
                message="Invalid or expired requestState",
                data={"reason": "invalid_request_state"},
            ) from None
        forward, forward_with = _runners(ctx, call_next, params)
        if confirm:
            accepted = self.confirmations.answer_in(params.input_responses)
            return await self.gate.fail_closed(
                call.tool, self.confirmations.settle(call, evaluation, accepted, forward)
            )
        progress = progress_reporter(ctx)
        return await self.gate.fail_closed(
            call.tool,
            self.rounds.next_round(
                call, evaluation, state, progress, features, forward, forward_with
            ),
        )


def _runners(
    ctx: ServerRequestContext[Any, Any], call_next: CallNext, params: types.CallToolRequestParams
) -> tuple[Forward, ForwardWith]:
    """How this host runs the call: as the agent made it, or with other arguments (those
    an approver approved)."""

    async def forward() -> types.CallToolResult:
        result = await call_next(ctx)
        if isinstance(result, types.CallToolResult):
            return result
        return error_result(f"Signoff: unexpected result type from {params.name}")

    async def forward_with(arguments: Mapping[str, Any]) -> types.CallToolResult:
        # The wrapped handler is invoked with this very params object.
        params.arguments = dict(arguments)
        return await forward()

    return forward, forward_with


def _quiet(ctx: ServerRequestContext[Any, Any]) -> ServerRequestContext[Any, Any]:
    """`ctx` for a call that runs after its request was answered (a task): no progress
    goes to a request that is over."""
    return replace(ctx, params={k: v for k, v in (ctx.params or {}).items() if k != "_meta"})
