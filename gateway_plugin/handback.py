"""The gate for hosts that run the call themselves and only ask Signoff first.

A Docker MCP gateway `before` interceptor or a ContextForge `tool_pre_invoke`
hook never hands Signoff a way to run the call: it asks "may this call go
ahead?" and runs it itself when the answer is yes. `HandBackGate.decide` is
`ApprovalGate.handle` with that shape: None means "go ahead" (the call is
allowed, or approved and its approval claimed for this one execution), a
`CallToolResult` is the refusal to show the agent (denied, hidden,
rate-limited, rejected, expired, still pending after the hold, service down).

Such hosts usually cut the question off after a while (ContextForge after its
plugin timeout), so they pass a `hold` below that: a call still pending then is
refused with the "pending approval, retry" text, and the identical retry
attaches to the same request and goes ahead once it is approved.
"""

from __future__ import annotations

from mcp_types import CallToolResult, TextContent

from gateway_plugin.gate import ApprovalGate, ProgressFn, ToolCall

__all__ = ["HandBackGate"]

# Identity matters, not content: `decide` recognises this very object.
_GO_AHEAD = CallToolResult(content=[TextContent(text="handed back to the host to run")])


async def _go_ahead() -> CallToolResult:
    return _GO_AHEAD


class HandBackGate(ApprovalGate):
    """An `ApprovalGate` whose `forward` is "let the host run it"."""

    # The host runs the call: its result never passes through here, so there is no
    # outcome to record (the claim already logged `call.forwarded`).
    reports_outcomes = False

    async def decide(
        self, call: ToolCall, progress: ProgressFn | None = None
    ) -> CallToolResult | None:
        """None when the host may run `call` now; else the tool error to return instead."""
        result = await self.handle(call, _go_ahead, progress)
        return None if result is _GO_AHEAD else result
