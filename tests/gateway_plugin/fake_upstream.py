"""A minimal SDK-built upstream for what server-everything cannot show (test_proxy_stdio.py).

Tools: `block` waits until cancelled and then appends "cancelled" to the file
named by $FAKE_UPSTREAM_LOG; `die` ends the process mid-call; `ids_seen`
answers with the ids of the requests this server has received (a result that
quotes the gateway's own request ids); `calls_seen` answers with the names of
the tools called so far (itself included), and `params_seen` the keys of each
call's params, so a story sees what reached it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

_TOOLS = [
    types.Tool(name="block", input_schema={"type": "object"}),
    types.Tool(name="die", input_schema={"type": "object"}),
    types.Tool(name="ids_seen", input_schema={"type": "object"}),
    types.Tool(name="calls_seen", input_schema={"type": "object"}),
    types.Tool(name="params_seen", input_schema={"type": "object"}),
]
_SEEN: list[types.RequestId | None] = []
_CALLED: list[str] = []
_PARAMS: list[list[str]] = []


async def list_tools(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    """List the tools."""
    _SEEN.append(ctx.request_id)
    return types.ListToolsResult(tools=_TOOLS)


async def call_tool(
    ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    """Block until cancelled, exit the process, or tell the request ids seen."""
    _SEEN.append(ctx.request_id)
    _CALLED.append(params.name)
    _PARAMS.append(sorted(params.model_dump(by_alias=True, exclude_none=True)))
    if params.name == "params_seen":
        return types.CallToolResult(content=[types.TextContent(text=json.dumps(_PARAMS))])
    if params.name == "calls_seen":
        return types.CallToolResult(content=[types.TextContent(text=json.dumps(_CALLED))])
    if params.name == "ids_seen":
        return types.CallToolResult(content=[types.TextContent(text=json.dumps(_SEEN))])
    if params.name == "die":
        os._exit(3)
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        with open(os.environ["FAKE_UPSTREAM_LOG"], "a") as log:
            log.write("cancelled\n")
        raise
    raise AssertionError("unreachable")


async def main() -> None:
    """Serve over stdio."""
    server = Server("fake-upstream", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
