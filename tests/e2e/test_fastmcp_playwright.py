"""`gateway_plugin.fastmcp.SignoffMiddleware` in a FastMCP proxy in front of the Playwright server.

The proxy is FastMCP's own (`create_proxy`); an agent talks to it with FastMCP's
client. The same README policy as the stdio gateway: `end_codegen_session`
needs a QA lead, `playwright_evaluate` is denied, `playwright_console_logs`
hidden. The service enforces it; the middleware fetches it from there and
follows its edits.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from support import pending_request, requests_of, require

try:
    from fastmcp import Client
    from fastmcp.client.transports import StdioTransport
    from fastmcp.server import create_proxy

    from gateway_plugin.fastmcp import SignoffMiddleware
except ImportError:  # the optional extra is missing
    Client = None  # type: ignore[assignment,misc]

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

END = "end_codegen_session"


def texts(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


@pytest.fixture
def open_proxy(service: Any, playwright_command: list[str]) -> Callable[..., Any]:
    """A FastMCP proxy with Signoff's middleware, and a FastMCP client connected to it."""
    require(Client is not None, "fastmcp is not installed (pip install -e '.[fastmcp]')")
    token = service.token("gateway", "fastmcp-proxy")

    @asynccontextmanager
    async def open_(rules: dict[str, Any], agent: str) -> AsyncIterator[Any]:
        service.enforce(rules)
        upstream = Client(
            StdioTransport(
                playwright_command[0],
                playwright_command[1:],
                env={"PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"},
            ),
            mode="legacy",
        )
        proxy = create_proxy(upstream, name="guarded-playwright")
        middleware = SignoffMiddleware.from_settings(service=service.url, token=token, agent=agent)
        proxy.add_middleware(middleware)
        try:
            async with Client(proxy, mode="legacy") as client:
                yield client
        finally:
            await middleware.aclose()

    return open_


async def test_the_policy_applies_inside_a_fastmcp_proxy(
    open_proxy: Any, policy: Any, agent_name: str, alice: Any, tmp_path: Path
) -> None:
    out_dir = tmp_path / "generated"
    async with open_proxy(policy(), agent_name) as client:
        names = {tool.name for tool in await client.list_tools()}
        assert {"playwright_navigate", "playwright_evaluate", END} <= names
        assert "playwright_console_logs" not in names  # on_list_tools hides it

        denied = await client.call_tool(
            "playwright_evaluate", {"script": "1+1"}, raise_on_error=False
        )
        assert denied.is_error and "arbitrary JS" in texts(denied)
        hidden = await client.call_tool(
            "playwright_console_logs", {"type": "all"}, raise_on_error=False
        )
        assert hidden.is_error and "hidden by policy" in texts(hidden)

        started = await client.call_tool(
            "start_codegen_session",
            {"options": {"outputPath": str(out_dir), "testNamePrefix": "Signoff"}},
        )
        session_id = json.loads(texts(started))["sessionId"]

        results: list[Any] = []

        async def end() -> None:
            results.append(await client.call_tool(END, {"sessionId": session_id}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(end)
            request = await pending_request(alice, agent_name, END)
            assert request["arguments"] == {"sessionId": session_id}
            await anyio.sleep(0.3)
            assert results == [] and not any(out_dir.glob("*"))
            alice.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
    [result] = results
    assert not result.is_error and "Generated test file" in texts(result)
    assert len([p for p in out_dir.glob("*") if p.is_file()]) == 1
    assert alice.get(f"/requests/{request['id']}").json()["claimed_at"] is not None


async def test_pending_hands_back_and_the_retry_runs_once_approved(
    open_proxy: Any, policy: Any, agent_name: str, bob: Any, tmp_path: Path
) -> None:
    async with open_proxy(policy(hold="1s"), agent_name) as client:
        started = await client.call_tool(
            "start_codegen_session", {"options": {"outputPath": str(tmp_path / "out")}}
        )
        session_id = json.loads(texts(started))["sessionId"]
        first = await client.call_tool(END, {"sessionId": session_id}, raise_on_error=False)
        assert first.is_error and "pending approval" in texts(first)
        [request] = requests_of(bob, agent_name, END)
        assert request["id"] in texts(first)
        bob.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
        retry = await client.call_tool(END, {"sessionId": session_id}, raise_on_error=False)
        assert not retry.is_error and "Generated test file" in texts(retry)
        assert len(requests_of(bob, agent_name, END)) == 1


async def test_an_edit_to_the_services_policy_reaches_the_middleware(
    open_proxy: Any, policy: Any, agent_name: str, service: Any
) -> None:
    async with open_proxy(policy(), agent_name) as client:
        names = {tool.name for tool in await client.list_tools()}
        assert "playwright_console_logs" not in names
        service.enforce({**policy(), "hide": []})
        with anyio.fail_after(10):
            while "playwright_console_logs" not in names:
                await anyio.sleep(0.2)
                names = {tool.name for tool in await client.list_tools()}


async def test_the_middleware_runs_the_session_the_approver_chose(
    open_proxy: Any, policy: Any, agent_name: str, alice: Any, tmp_path: Path
) -> None:
    async with open_proxy(policy(), agent_name) as client:
        sessions = {}
        for name in ("asked", "chosen"):
            started = await client.call_tool(
                "start_codegen_session", {"options": {"outputPath": str(tmp_path / name)}}
            )
            sessions[name] = json.loads(texts(started))["sessionId"]
        results: list[Any] = []

        async def end() -> None:
            results.append(await client.call_tool(END, {"sessionId": sessions["asked"]}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(end)
            request = await pending_request(alice, agent_name, END)
            edited = alice.post(
                f"/requests/{request['id']}/decisions",
                json={"decision": "approve", "arguments": {"sessionId": sessions["chosen"]}},
            )
            assert edited.status_code == 200, edited.text
    [result] = results
    assert not result.is_error and "Generated test file" in texts(result)
    assert "alice changed the arguments before approving (changed: sessionId)" in texts(result)
    assert result.meta["signoff"]["edited_by"] == "alice"
    assert [p for p in (tmp_path / "chosen").glob("*") if p.is_file()]
    assert not (tmp_path / "asked").exists() or not any((tmp_path / "asked").glob("*"))


async def test_an_edited_approval_runs_the_approved_arguments_in_a_fastmcp_proxy(
    service: Any, everything_command: list[str], agent_name: str, alice: Any
) -> None:
    require(Client is not None, "fastmcp is not installed (pip install -e '.[fastmcp]')")
    rule = {"action": "require_approval", "approvers": "qa-leads", "hold": "20s"}
    group = {"qa-leads": {"members": ["alice", "bob"]}}
    service.enforce(
        {"version": "1", "default": "allow", "approver_groups": group, "tools": {"echo": rule}}
    )
    upstream = Client(StdioTransport(everything_command[0], everything_command[1:]), mode="legacy")
    proxy = create_proxy(upstream, name="guarded-everything")
    token = service.token("gateway", "fastmcp-edits")
    middleware = SignoffMiddleware.from_settings(service=service.url, token=token, agent=agent_name)
    proxy.add_middleware(middleware)
    results: list[Any] = []
    try:
        async with Client(proxy, mode="legacy") as client:

            async def call() -> None:
                asked = {"message": "drop the database"}
                results.append(await client.call_tool("echo", asked, raise_on_error=False))

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                request = await pending_request(alice, agent_name, "echo")
                body = {"decision": "approve", "arguments": {"message": "say hello"}}
                edited = alice.post(f"/requests/{request['id']}/decisions", json=body)
                assert edited.status_code == 200, edited.text
    finally:
        await middleware.aclose()
    [result] = results
    assert not result.is_error
    text = texts(result)
    assert text.startswith("Echo: say hello") and "Echo: drop the database" not in text
    assert "alice changed the arguments before approving (changed: message)" in text
    assert result.meta["signoff"]["approved_arguments"] == {"message": "say hello"}
