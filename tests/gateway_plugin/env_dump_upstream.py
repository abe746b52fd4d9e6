"""An upstream MCP server that writes down what it was started with (test_cli_gateway_env.py).

    python env_dump_upstream.py OUT [ARGS...]

At start it writes `{"environ": {...}, "argv": [...]}` as JSON to OUT (whole or
not at all), then serves one tool, `ping`, over stdio: an untrusted server
that looks at everything it was given.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server


def dump(out: Path) -> None:
    """Write the environment and argv to `out`, atomically (a reader never sees half)."""
    partial = out.with_name(f"{out.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps({"environ": dict(os.environ), "argv": sys.argv}))
    partial.replace(out)


async def list_tools(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[types.Tool(name="ping", input_schema={"type": "object"})])


async def call_tool(
    ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text="pong")])


async def main() -> None:
    dump(Path(sys.argv[1]))
    server = Server("env-dump", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
