"""The stdio MCP proxy, driven the way an agent drives it.

Each test launches the proxy as a child process with the official MCP client
(`stdio_client` + `ClientSession`), in front of a real upstream: the npm
server-everything or playwright server, or `fake_upstream.py` where the
behaviour under test (upstream-side cancellation, upstream death) cannot be
observed on the real servers. Pass-through tests compare the proxied answer
with the same request sent to a second, directly connected upstream.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.client.session import ClientRequestContext, ClientSession, IncomingMessage
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from pydantic import FileUrl

HERE = Path(__file__).resolve().parent
NODE_BIN = HERE.parent / "mcp_servers" / "node_modules" / ".bin"
EVERYTHING = NODE_BIN / "mcp-server-everything"
PLAYWRIGHT = NODE_BIN / "playwright-mcp-server"
STATIC_DOC = "demo://resource/static/document/architecture.md"

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def require_binary(path: Path) -> list[str]:
    """Return the command for a node MCP server; skip if missing, or fail when CI=true."""
    missing = None
    if not (path.exists() and os.access(path, os.X_OK)):
        missing = f"{path} is not installed (npm ci in tests/mcp_servers)"
    elif shutil.which("node") is None:
        missing = "node is not on PATH"
    if missing is None:
        return [str(path)]
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required in CI: {missing}")
    pytest.skip(missing)


def everything() -> list[str]:
    return [*require_binary(EVERYTHING), "stdio"]


def direct(command: list[str], env: dict[str, str] | None = None) -> StdioServerParameters:
    return StdioServerParameters(command=command[0], args=command[1:], env=env)


def proxied(
    command: list[str], *flags: str, env: dict[str, str] | None = None
) -> StdioServerParameters:
    """The pass-through proxy module in front of `command`."""
    args = ["-m", "gateway_plugin.proxy.stdio", *flags, "--", *command]
    return StdioServerParameters(command=sys.executable, args=args, env=env)


def harnessed(
    command: list[str], *flags: str, env: dict[str, str] | None = None
) -> StdioServerParameters:
    """`proxy_harness.py` (test extensions) in front of `command`."""
    args = [str(HERE / "proxy_harness.py"), *flags, "--", *command]
    return StdioServerParameters(command=sys.executable, args=args, env=env)


@asynccontextmanager
async def connect(
    params: StdioServerParameters, **session_kwargs: Any
) -> AsyncIterator[ClientSession]:
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write, **session_kwargs) as session,
    ):
        await session.initialize()
        yield session


def dumps(model: types.Result | list[types.Tool]) -> Any:
    if isinstance(model, list):
        return [tool.model_dump(by_alias=True, exclude_none=True) for tool in model]
    return model.model_dump(by_alias=True, exclude_none=True)


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll `check` (plain or async) until it holds."""
    with anyio.fail_after(timeout):
        while True:
            outcome = check()
            if await outcome if inspect.isawaitable(outcome) else outcome:
                return
            await anyio.sleep(0.05)


def text_of(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


async def test_initialize_mirrors_upstream_capabilities_and_instructions() -> None:
    command = everything()
    async with connect(direct(command)) as plain, connect(proxied(command)) as gateway:
        up, mine = plain.initialize_result, gateway.initialize_result
        assert up is not None and mine is not None
        assert mine.server_info.name == "signoff-gateway"
        assert mine.instructions == up.instructions and up.instructions
        # Everything the proxy serves is advertised exactly as upstream does;
        # tasks are not proxied and so not advertised.
        for field in ("tools", "resources", "prompts", "logging", "completions"):
            assert getattr(mine.capabilities, field) == getattr(up.capabilities, field), field
        assert up.capabilities.tasks is not None and mine.capabilities.tasks is None


async def test_tools_list_and_echo_identical_to_direct() -> None:
    command = everything()
    async with connect(direct(command)) as plain, connect(proxied(command)) as gateway:
        up_tools, my_tools = await plain.list_tools(), await gateway.list_tools()
        assert dumps(my_tools.tools) == dumps(up_tools.tools)
        assert "echo" in {tool.name for tool in my_tools.tools}
        up_echo = await plain.call_tool("echo", {"message": "hello through the gateway"})
        my_echo = await gateway.call_tool("echo", {"message": "hello through the gateway"})
        assert dumps(my_echo) == dumps(up_echo)
        assert text_of(my_echo) == "Echo: hello through the gateway"


async def test_resources_and_prompts_pass_through() -> None:
    command = everything()
    async with connect(direct(command)) as plain, connect(proxied(command)) as gateway:
        assert dumps(await gateway.list_resources()) == dumps(await plain.list_resources())
        assert dumps(await gateway.list_resource_templates()) == dumps(
            await plain.list_resource_templates()
        )
        assert dumps(await gateway.read_resource(STATIC_DOC)) == dumps(
            await plain.read_resource(STATIC_DOC)
        )
        assert dumps(await gateway.list_prompts()) == dumps(await plain.list_prompts())
        args = {"city": "Lyon", "state": "Rhone"}
        assert dumps(await gateway.get_prompt("args-prompt", args)) == dumps(
            await plain.get_prompt("args-prompt", args)
        )
        ref = types.PromptReference(type="ref/prompt", name="completable-prompt")
        argument = {"name": "department", "value": "E"}
        assert dumps(await gateway.complete(ref, argument)) == dumps(
            await plain.complete(ref, argument)
        )


async def test_modern_era_agent_is_served() -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    params = proxied(everything())
    async with stdio_client(params) as (read, write), ClientSession(read, write) as gateway:
        await gateway.discover()
        assert gateway.protocol_version == "2026-07-28"
        assert "echo" in {tool.name for tool in (await gateway.list_tools()).tools}
        assert text_of(await gateway.call_tool("echo", {"message": "m"})) == "Echo: m"
        await gateway.call_tool(
            "trigger-long-running-operation",
            {"duration": 0.2, "steps": 2},
            progress_callback=on_progress,
        )
        await eventually(lambda: sorted(seen) == [1.0, 2.0])


async def test_upstream_errors_pass_through_unchanged() -> None:
    command = everything()
    async with connect(direct(command)) as plain, connect(proxied(command)) as gateway:
        # A tool error is a result with isError, not a JSON-RPC error.
        up_result = await plain.call_tool("get-sum", {"a": "not a number"})
        my_result = await gateway.call_tool("get-sum", {"a": "not a number"})
        assert my_result.is_error and dumps(my_result) == dumps(up_result)
        # JSON-RPC errors keep their code and message.
        for request in (
            lambda s: s.read_resource("demo://resource/does-not-exist"),
            lambda s: s.get_prompt("no-such-prompt"),
        ):
            with pytest.raises(MCPError) as up_error:
                await request(plain)
            with pytest.raises(MCPError) as my_error:
                await request(gateway)
            assert my_error.value.error == up_error.value.error


async def test_upstream_progress_reaches_client() -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with connect(proxied(everything())) as gateway:
        result = await gateway.call_tool(
            "trigger-long-running-operation",
            {"duration": 0.3, "steps": 3},
            progress_callback=on_progress,
        )
        assert not result.is_error
        await eventually(lambda: len(seen) == 3)
        assert sorted(seen) == [(1.0, 3.0, None), (2.0, 3.0, None), (3.0, 3.0, None)]


async def test_upstream_notifications_reach_client() -> None:
    received: list[IncomingMessage] = []

    async def on_message(message: IncomingMessage) -> None:
        received.append(message)

    def updated() -> list[str]:
        return [m.params.uri for m in received if isinstance(m, types.ResourceUpdatedNotification)]

    def logs() -> list[str]:
        return [
            str(m.params.data) for m in received if isinstance(m, types.LoggingMessageNotification)
        ]

    async with connect(proxied(everything()), message_handler=on_message) as gateway:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await gateway.set_logging_level("debug")
            await gateway.subscribe_resource(STATIC_DOC)
        # server-everything logs each subscription, then (toggled on) sends
        # resources/updated for the subscribed URI right away and every 5 s.
        await eventually(lambda: any("Subscribe" in line for line in logs()))
        await gateway.call_tool("toggle-subscriber-updates", {})
        await eventually(lambda: STATIC_DOC in updated())


async def test_visible_tool_filter_hides_tools() -> None:
    command = everything()
    async with (
        connect(direct(command)) as plain,
        connect(harnessed(command, "--hide", "get-env")) as gateway,
    ):
        up_names = [tool.name for tool in (await plain.list_tools()).tools]
        my_names = [tool.name for tool in (await gateway.list_tools()).tools]
        assert "get-env" in up_names
        assert my_names == [name for name in up_names if name != "get-env"]


async def harness_state(session: ClientSession) -> dict[str, list[Any]]:
    state: dict[str, list[Any]] = json.loads(text_of(await session.call_tool("harness_state", {})))
    return state


async def test_short_circuit_never_reaches_upstream() -> None:
    async with connect(harnessed(everything())) as gateway:
        result = await gateway.call_tool("harness_short_circuit", {"anything": 1})
        assert text_of(result) == "short-circuited" and not result.is_error
        echoed = await gateway.call_tool("echo", {"message": "forwarded"})
        assert text_of(echoed) == "Echo: forwarded"
        assert (await harness_state(gateway))["forwarded"] == ["echo"]


async def test_extension_progress_reaches_client_and_session_key_is_stable() -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with connect(harnessed(everything())) as gateway:
        with_token = json.loads(
            text_of(await gateway.call_tool("harness_progress", {}, progress_callback=on_progress))
        )
        without_token = json.loads(text_of(await gateway.call_tool("harness_progress", {})))
        await eventually(lambda: len(seen) == 3)
    assert sorted(seen) == [(1.0, 3.0, "step 1"), (2.0, 3.0, "step 2"), (3.0, 3.0, "step 3")]
    assert with_token["had_reporter"] is True and without_token["had_reporter"] is False
    assert with_token["session_key"] == without_token["session_key"]
    assert with_token["session_key"].startswith("connection:")


async def test_client_cancellation_cancels_held_call_and_proxy_stays_usable() -> None:
    async with connect(harnessed(everything())) as gateway:
        with anyio.move_on_after(1.0) as scope:
            await gateway.call_tool("harness_hold", {})
        assert scope.cancelled_caught

        async def hold_was_cancelled() -> bool:
            state = await harness_state(gateway)
            return len(state["held"]) == 1 and state["cancelled"] == state["held"]

        await eventually(hold_was_cancelled)
        assert (
            text_of(await gateway.call_tool("echo", {"message": "still here"}))
            == "Echo: still here"
        )


async def test_client_cancellation_reaches_upstream(tmp_path: Path) -> None:
    log = tmp_path / "upstream.log"
    upstream = [sys.executable, str(HERE / "fake_upstream.py")]
    async with connect(proxied(upstream, env={"FAKE_UPSTREAM_LOG": str(log)})) as gateway:
        with anyio.move_on_after(1.0):
            await gateway.call_tool("block", {})
        await eventually(lambda: log.exists() and "cancelled" in log.read_text())
        tools = (await gateway.list_tools()).tools
        names = ["block", "die", "ids_seen", "calls_seen", "params_seen"]
        assert [tool.name for tool in tools] == names


async def test_proxy_exits_when_upstream_dies(tmp_path: Path) -> None:
    env = dict(os.environ, FAKE_UPSTREAM_LOG=str(tmp_path / "upstream.log"))
    argv = [
        sys.executable,
        "-m",
        "gateway_plugin.proxy.stdio",
        "--",
        sys.executable,
        str(HERE / "fake_upstream.py"),
    ]
    async with await anyio.open_process(argv, env=env, stderr=None) as process:
        assert process.stdin is not None and process.stdout is not None
        lines = process.stdout

        async def send(message: dict[str, Any]) -> None:
            assert process.stdin is not None
            await process.stdin.send((json.dumps(message) + "\n").encode())

        async def receive() -> dict[str, Any]:
            buffer = b""
            while not buffer.endswith(b"\n"):
                buffer += await lines.receive(1)
            reply: dict[str, Any] = json.loads(buffer)
            return reply

        await send(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"},
                },
            }
        )
        assert (await receive())["id"] == 1
        await send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        await send(
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "die", "arguments": {}},
            }
        )
        with anyio.fail_after(10):
            reply = await receive()
            # The in-flight call is answered, then the proxy goes away although
            # the agent keeps its end of the pipe open.
            assert reply["id"] == 2 and reply["error"]["message"] == "Connection closed"
            assert await process.wait() == 1


async def test_an_answer_quoting_the_gateways_own_request_ids_reaches_the_agent() -> None:
    """The proxy tells its own upstream requests from the agent's by a mark on their ids;
    a tool result that happens to contain such an id is still the agent's answer."""
    fake = [sys.executable, str(HERE / "fake_upstream.py")]
    async with connect(proxied(fake)) as session:
        await session.list_tools()  # the proxy's own session asks upstream, under a marked id
        with anyio.fail_after(10):
            result = await session.call_tool("ids_seen", {})
        again = await session.call_tool("ids_seen", {})
    seen = json.loads(text_of(result))
    assert any(isinstance(i, str) and i.startswith("signoff-") for i in seen), seen
    assert len(json.loads(text_of(again))) == len(seen) + 1


async def test_roots_forwarding_both_ways() -> None:
    roots = [types.Root(uri=FileUrl("file:///srv/first"), name="first")]

    async def list_roots(context: ClientRequestContext) -> types.ListRootsResult:
        return types.ListRootsResult(roots=list(roots))

    async with connect(
        proxied(everything(), "--forward-roots"), list_roots_callback=list_roots
    ) as gateway:

        async def roots_text() -> str:
            return text_of(await gateway.call_tool("get-roots-list", {}))

        await eventually(lambda: _contains(roots_text(), "file:///srv/first"))
        roots[:] = [types.Root(uri=FileUrl("file:///srv/second"), name="second")]
        await gateway.send_notification(types.RootsListChangedNotification())
        await eventually(lambda: _contains(roots_text(), "file:///srv/second"))


async def _contains(text: Awaitable[str], needle: str) -> bool:
    return needle in await text


async def test_playwright_tools_through_proxy() -> None:
    command = require_binary(PLAYWRIGHT)
    env = {"PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"}
    async with (
        connect(direct(command, env)) as plain,
        connect(proxied(command, env=env)) as gateway,
    ):
        up_tools, my_tools = await plain.list_tools(), await gateway.list_tools()
        assert dumps(my_tools.tools) == dumps(up_tools.tools)
        names = {tool.name for tool in my_tools.tools}
        assert {"start_codegen_session", "end_codegen_session", "playwright_navigate"} <= names
