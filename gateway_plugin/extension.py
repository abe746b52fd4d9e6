"""The Signoff interception point as an MCP SDK `Extension`.

Any host built on the official SDK can install it: `MCPServer(extensions=[...])`,
or a low-level server through `compose_tool_call_handler` as the built-in proxy does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mcp_types as types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension

from gateway_plugin.gate import ApprovalGate, ToolCall, error_result
from gateway_plugin.policy import Evaluation
from gateway_plugin.proxy.context import caller_name, progress_reporter, session_key
from gateway_plugin.proxy.fastpath import Verdict

_FORWARD: Verdict = ("forward", None)
_INTERCEPT: Verdict = ("intercept", None)


class SignoffExtension(Extension):
    """Holds, denies or forwards each tools/call according to the Signoff policy."""

    identifier = "dev.signoff/approvals"

    def __init__(self, gate: ApprovalGate, *, server: str = "") -> None:
        self.gate = gate
        self.server = server

    def screen_tool_call(self, name: str, arguments: Mapping[str, Any], session: str) -> Verdict:
        """Settle a call without a request context when no human is needed (the fast path)."""
        gate = self.gate
        if gate.allows_outright(name, self.server):
            return _FORWARD
        call = ToolCall(tool=name, arguments=arguments, server=self.server, session=session)
        evaluation = gate.evaluate(call)
        if gate.needs_approval(call, evaluation):
            return _INTERCEPT
        refusal = gate.screen(call, evaluation)
        assert not isinstance(refusal, Evaluation)  # only approvals evaluate to one
        return _FORWARD if refusal is None else ("reply", refusal)

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

        async def forward() -> types.CallToolResult:
            result = await call_next(ctx)
            if isinstance(result, types.CallToolResult):
                return result
            return error_result(f"Signoff: unexpected result type from {params.name}")

        return await self.gate.handle(call, forward, progress_reporter(ctx))
