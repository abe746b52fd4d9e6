"""Signoff as FastMCP middleware: the same gate inside any FastMCP server or proxy.

    from fastmcp.server import create_proxy
    from gateway_plugin.fastmcp import SignoffMiddleware

    proxy = create_proxy(upstream, name="guarded")
    proxy.add_middleware(SignoffMiddleware.from_settings(service="http://127.0.0.1:8000",
                                                         token=os.environ["SIGNOFF_TOKEN"]))

The policy is the approval service's (`policy_source`): fetched before the
first call is answered and followed while the server runs. `policy=FILE` adds
a local fallback, used only while the service has none or cannot be reached at
the first call; until some policy has arrived every call is refused.

The wiring is a `GatewayRuntime` (`runtime`), the same as `signoff gateway`'s.
`on_call_tool` runs each call through `ApprovalGate.handle`: allowed calls go on
to the tool (or the proxied upstream) untouched; denied, hidden and
rate-limited ones come back as tool errors; calls that need approval are held
in-band with progress notifications, then run (with the arguments the approver
approved, and a note of what changed, when they were edited), refused, or
handed back as "pending approval, retry" exactly as in `signoff gateway`.
`on_list_tools` drops the tools the policy hides.

The caller is the FastMCP access token's client id when the server uses
FastMCP auth, else the gate's `agent` (or the gateway token's name); the
session is FastMCP's session id. Needs the optional extra: `pip install
'signoff[fastmcp]'`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mcp_types as mt
from fastmcp.server.dependencies import get_access_token
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools.base import Tool, ToolResult

from gateway_plugin.gate import DEFAULT_HOLD_SECONDS, ProgressFn, ToolCall
from gateway_plugin.runtime import GatewayRuntime

__all__ = ["SignoffMiddleware"]


def _caller() -> str:
    try:
        token = get_access_token()
    except Exception:  # no request context (in-memory transports)
        return ""
    return token.client_id if token is not None else ""


def _session(context: MiddlewareContext[Any]) -> str | None:
    ctx = context.fastmcp_context
    if ctx is None:
        return None
    try:
        return f"fastmcp:{ctx.session_id}"
    except RuntimeError:
        return None


def _progress(context: MiddlewareContext[Any]) -> ProgressFn | None:
    ctx = context.fastmcp_context
    if ctx is None:
        return None

    async def report(progress: float, total: float | None, message: str | None) -> None:
        # A no-op in FastMCP when the client sent no progressToken.
        await ctx.report_progress(progress, total, message)

    return report


class SignoffMiddleware(Middleware):
    """FastMCP middleware applying a Signoff policy to every tools/call."""

    def __init__(self, runtime: GatewayRuntime, *, server: str = "") -> None:
        self.runtime = runtime
        self.gate = runtime.gate
        self.server = server

    @classmethod
    def from_settings(
        cls,
        *,
        service: str,
        token: str,
        policy: str | Path | None = None,
        agent: str | None = None,
        server: str = "",
        hold: float = DEFAULT_HOLD_SECONDS,
    ) -> SignoffMiddleware:
        """The middleware over a `GatewayRuntime`: the service's policy (`policy`: a local
        fallback file; PolicyError when it is invalid), decision push, audit."""
        runtime = GatewayRuntime(service, token, policy=policy, agent=agent, hold=hold)
        return cls(runtime, server=server)

    async def aclose(self) -> None:
        """Flush the audit queue and close the service connections."""
        await self.runtime.aclose()

    async def on_call_tool(
        self,
        context: MiddlewareContext[mt.CallToolRequestParams],
        call_next: CallNext[mt.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        await self.runtime.begin()  # on the server's own loop, at the first request
        params = context.message
        call = ToolCall(
            tool=params.name,
            arguments=params.arguments or {},
            server=self.server,
            caller=_caller(),
            session=_session(context),
        )
        ran: list[tuple[ToolResult, mt.CallToolResult]] = []

        async def run(ctx: MiddlewareContext[mt.CallToolRequestParams]) -> mt.CallToolResult:
            result = await call_next(ctx)
            seen = mt.CallToolResult(content=list(result.content), is_error=bool(result.is_error))
            ran.append((result, seen))
            return seen

        async def forward() -> mt.CallToolResult:
            return await run(context)

        async def forward_with(arguments: Mapping[str, Any]) -> mt.CallToolResult:
            edited = params.model_copy(update={"arguments": dict(arguments)})
            return await run(context.copy(message=edited))

        outcome = await self.gate.handle(
            call, forward, _progress(context), forward_with=forward_with
        )
        if ran and outcome is ran[0][1]:
            return ran[0][0]  # the tool ran: its own result, untouched
        if ran:  # it ran with the approver's arguments: its result, and what Signoff adds
            return ToolResult(
                content=list(outcome.content),
                structured_content=ran[0][0].structured_content,
                meta=outcome.meta,
                is_error=bool(outcome.is_error),
            )
        return ToolResult(content=list(outcome.content), is_error=True)

    async def on_list_tools(
        self,
        context: MiddlewareContext[mt.ListToolsRequest],
        call_next: CallNext[mt.ListToolsRequest, Sequence[Tool]],
    ) -> Sequence[Tool]:
        await self.runtime.begin()
        tools = await call_next(context)
        return [tool for tool in tools if self.gate.visible(tool.name, self.server)]
