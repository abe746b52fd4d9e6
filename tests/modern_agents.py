"""Agents that speak MCP 2026-07-28 to the real `signoff gateway` (the SDK's `Client`)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.context import ClientRequestContext

SIGNOFF = str(Path(sys.executable).parent / "signoff")

Elicit = Callable[[ClientRequestContext, types.ElicitRequestParams], Awaitable[types.ElicitResult]]


class Person:
    """The person at the client: answers every elicitation with `action`, and remembers them."""

    def __init__(self, action: str = "accept") -> None:
        self.action = action
        self.asked: list[types.ElicitRequestParams] = []

    async def __call__(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        self.asked.append(params)
        return types.ElicitResult(action=self.action)  # type: ignore[arg-type]


def held_echo(hold: str, **entry: Any) -> dict[str, Any]:
    """server-everything's `echo` needs a QA lead (the stories' approvers); held `hold`."""
    rule = {"action": "require_approval", "approvers": "qa-leads", "hold": hold, "timeout": "10m"}
    rule.update(entry)
    return {"version": "1", "default": "allow", "tools": {"echo": rule}}


def gateway_command(
    service_url: str, token: str, agent: str, upstream: list[str]
) -> StdioServerParameters:
    args = ["gateway", "--service", service_url, "--token", token, "--agent", agent]
    args += ["--", *upstream]
    return StdioServerParameters(command=SIGNOFF, args=args)


@asynccontextmanager
async def modern_agent(
    service: Any,
    token: str,
    agent: str,
    upstream: list[str],
    *,
    elicit: Elicit | None = None,
    **client: Any,
) -> AsyncIterator[Client]:
    """An SDK `Client` (protocol negotiated by default: 2026-07-28) through the gateway."""
    params = gateway_command(service.url, token, agent, upstream)
    async with Client(params, elicitation_callback=elicit, **client) as session:
        assert session.protocol_version == "2026-07-28"
        yield session


async def events_of(auditor: httpx.Client, request_id: str, kind: str) -> list[dict[str, Any]]:
    """The audit events of `kind` about one request."""
    events = auditor.get("/audit/export", params={"format": "json"}).json()
    return [e for e in events if e["request_id"] == request_id and e["type"] == kind]


async def decide_when_pending(
    approver: httpx.Client, agent: str, tool: str, decision: str, *, after: float, comment: str = ""
) -> str:
    """Wait `after` seconds, then decide the agent's pending call; returns the request id."""
    await anyio.sleep(after)
    with anyio.fail_after(15):
        while True:
            page = approver.get("/requests", params={"status": "pending", "tool": tool}).json()
            mine = [item for item in page["items"] if item["caller"] == agent]
            if mine:
                break
            await anyio.sleep(0.05)
    body = {"decision": decision, "comment": comment or None}
    answer = approver.post(f"/requests/{mine[0]['id']}/decisions", json=body)
    assert answer.status_code == 200, answer.text
    return str(mine[0]["id"])


MODERN = "2026-07-28"
TASKS = "io.modelcontextprotocol/tasks"


class RawAgent:
    """A 2026-07-28 client speaking raw JSON-RPC lines to `signoff gateway` over stdio, for
    what the SDK client has no side of yet (the tasks extension)."""

    def __init__(self, process: Any) -> None:
        self._process = process
        self._ids = 0
        self._buffer = b""

    async def request(
        self, method: str, params: dict[str, Any] | None = None, *, extensions: bool = True
    ) -> dict[str, Any]:
        """Send one request with the 2026-07-28 envelope; its response (`result` or `error`)."""
        self._ids += 1
        capabilities: dict[str, Any] = {"extensions": {TASKS: {}}} if extensions else {}
        meta = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": capabilities,
            "io.modelcontextprotocol/clientInfo": {"name": "raw-agent", "version": "1"},
        }
        message = {"jsonrpc": "2.0", "id": self._ids, "method": method}
        message["params"] = {**(params or {}), "_meta": meta}
        await self._process.stdin.send((json.dumps(message) + "\n").encode())
        with anyio.fail_after(60):
            while True:
                answer = await self._line()
                if answer.get("id") == self._ids and "method" not in answer:
                    return answer

    async def _line(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            self._buffer += await self._process.stdout.receive()
        line, self._buffer = self._buffer.split(b"\n", 1)
        return dict(json.loads(line))


@asynccontextmanager
async def raw_agent(
    service: Any, token: str, agent: str, upstream: list[str]
) -> AsyncIterator[RawAgent]:
    """The gateway as a child process, driven line by line."""
    params = gateway_command(service.url, token, agent, upstream)
    async with await anyio.open_process(
        [params.command, *params.args], stderr=subprocess.DEVNULL
    ) as process:
        try:
            yield RawAgent(process)
        finally:
            process.terminate()
