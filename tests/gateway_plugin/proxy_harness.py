"""Runs `run_stdio_proxy` with test extensions in front of an upstream; used by test_proxy_stdio.py.

    python proxy_harness.py [--hide TOOL]... -- CMD ARGS...

The extensions answer a few reserved tool names themselves, so the tests can
drive and inspect the interceptor chain from an ordinary MCP client:

- `harness_state`: JSON of what the chain saw (calls that reached the
  upstream, held calls and whether they were cancelled).
- `harness_hold`: waits forever, recording its cancellation.
- `harness_progress`: reports three progress steps through `progress_reporter`
  and returns whether it had one plus the call's `session_key`.
- `harness_short_circuit`: answered without calling the rest of the chain.
"""

from __future__ import annotations

import argparse
import json
import os
from functools import partial
from typing import Any

import anyio
import mcp_types as types
from mcp.client.stdio import StdioServerParameters
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension

from gateway_plugin.proxy.context import progress_reporter, session_key
from gateway_plugin.proxy.stdio import run_stdio_proxy

STATE: dict[str, list[Any]] = {"forwarded": [], "held": [], "cancelled": []}


def _text(payload: Any) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(payload))])


class StateExtension(Extension):
    """Outermost: reports `STATE`."""

    identifier = "dev.signoff.test/state"

    async def intercept_tool_call(
        self,
        params: types.CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        if params.name == "harness_state":
            return _text(STATE)
        return await call_next(ctx)


class HoldExtension(Extension):
    """Holds `harness_hold` until the call is cancelled, like an approval wait."""

    identifier = "dev.signoff.test/hold"

    async def intercept_tool_call(
        self,
        params: types.CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        if params.name != "harness_hold":
            return await call_next(ctx)
        STATE["held"].append(ctx.request_id)
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            STATE["cancelled"].append(ctx.request_id)
            raise
        raise AssertionError("unreachable")


class ProgressExtension(Extension):
    """Answers `harness_progress` after reporting progress to the agent."""

    identifier = "dev.signoff.test/progress"

    async def intercept_tool_call(
        self,
        params: types.CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        if params.name != "harness_progress":
            return await call_next(ctx)
        report = progress_reporter(ctx)
        if report is not None:
            for step in (1, 2, 3):
                await report(step, 3, f"step {step}")
        return _text({"had_reporter": report is not None, "session_key": session_key(ctx)})


class ShortCircuitExtension(Extension):
    """Answers `harness_short_circuit` without calling the rest of the chain."""

    identifier = "dev.signoff.test/short-circuit"

    async def intercept_tool_call(
        self,
        params: types.CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        if params.name == "harness_short_circuit":
            return types.CallToolResult(
                content=[types.TextContent(type="text", text="short-circuited")]
            )
        return await call_next(ctx)


class RecorderExtension(Extension):
    """Innermost: records every call about to be forwarded upstream."""

    identifier = "dev.signoff.test/recorder"

    async def intercept_tool_call(
        self,
        params: types.CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        STATE["forwarded"].append(params.name)
        return await call_next(ctx)


def main() -> None:
    """Parse `[--hide TOOL]... -- CMD ARGS...` and serve."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--hide", action="append", default=[])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    hidden = frozenset(args.hide)

    def visible(tools: list[types.Tool]) -> list[types.Tool]:
        return [tool for tool in tools if tool.name not in hidden]

    extensions = [
        StateExtension(),
        HoldExtension(),
        ProgressExtension(),
        ShortCircuitExtension(),
        RecorderExtension(),
    ]
    upstream = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    anyio.run(
        partial(
            run_stdio_proxy, upstream, extensions, name="signoff-test", visible_tool_filter=visible
        )
    )


if __name__ == "__main__":
    main()
