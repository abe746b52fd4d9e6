"""`signoff gateway` over MCP streamable HTTP: agents at `--listen`, upstream at `--upstream-url`.

The upstream is `conformance_upstream.py` (an SDK server over streamable HTTP);
its `session_info` tool shows each upstream session as the server sees it.
Agents connect with the official SDK client, each with its own agent-role
token, whose name is the caller. The gateway enforces the service's policy
(each story makes the service enforce its own).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client, ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from support import (
    ROOT,
    calling,
    free_port,
    mcp_server_command,
    pending_request,
    text_of,
    wait_for_port,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

# The service runs on SQLite, then on PostgreSQL (tests/conftest.py).
STORES = ("sqlite", "postgresql")

SIGNOFF = str(Path(sys.executable).parent / "signoff")
UPSTREAM = ROOT / "tests" / "gateway_plugin" / "conformance_upstream.py"
UPSTREAM_BEARER = "Bearer upstream-secret"
HELD = "test_simple_text"


@contextmanager
def running(args: list[str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_for_port(port, proc, log)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def upstream_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("upstream") / "upstream.log"
    with running([sys.executable, str(UPSTREAM), "--port", str(port)], port, log):
        yield f"http://127.0.0.1:{port}/mcp"


def policy(**held: Any) -> dict[str, Any]:
    entry = {"action": "require_approval", "approvers": "leads", "hold": "20s", "timeout": "10m"}
    entry.update(held)
    return {
        "version": "1",
        "default": "allow",
        "approvers": {"alice": {"slack_user": "U0ALICE"}, "bob": {"slack_user": "U0BOB"}},
        "approver_groups": {"leads": {"members": ["alice", "bob"]}},
        "hide": ["json_schema_2020_12_tool"],
        "tools": {
            HELD: entry,
            "test_error_handling": {"action": "deny", "reason": "no errors today"},
            "test_image_content": {
                "limits": [{"counter": "img", "window": "hour", "max": 1, "scope": "grant"}]
            },
            "test_audio_content": {
                "limits": [{"counter": "audio", "window": "hour", "max": 1, "scope": "session"}]
            },
        },
    }


@pytest.fixture
def gateway(service: Any, upstream_url: str, tmp_path: Path) -> Iterator[Any]:
    """Start `signoff gateway --upstream-url ... --listen ...`; returns its agent URL."""
    token = service.token("gateway", "gw-http")

    @contextmanager
    def start(rules: dict[str, Any] | None = None, *extra: str) -> Iterator[str]:
        service.enforce(rules or policy())  # the gateway fetches it from the service
        port = free_port()
        args = [
            SIGNOFF, "gateway", "--service", service.url,
            "--token", token, "--upstream-url", upstream_url,
            "--upstream-header", f"Authorization: {UPSTREAM_BEARER}",
            "--listen", f"127.0.0.1:{port}", *extra,
        ]  # fmt: skip
        with running(args, port, tmp_path / f"gateway-{port}.log"):
            yield f"http://127.0.0.1:{port}/mcp"

    yield start


@asynccontextmanager
async def agent(url: str, token: str | None) -> AsyncIterator[ClientSession]:
    """An MCP session with the gateway, as an agent presenting `token`."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def session_info(session: ClientSession) -> dict[str, Any]:
    result = await session.call_tool("session_info", {})
    assert not result.is_error, text_of(result)
    return dict(json.loads(text_of(result)))


async def test_each_agent_session_has_its_own_upstream_session(gateway: Any, service: Any) -> None:
    ci, dev = service.token("agent", "ci-bot"), service.token("agent", "dev-bot")
    with gateway() as url:
        async with agent(url, ci) as one, agent(url, ci) as two, agent(url, dev) as three:
            infos = [await session_info(s) for s in (one, two, three)]
            sessions = {info["session"] for info in infos}
            assert len(sessions) == 3 and None not in sessions
            # The upstream sees the gateway's --upstream-header, never an agent's token.
            assert {info["authorization"] for info in infos} == {UPSTREAM_BEARER}
            first = infos[0]["session"]
            assert first in infos[2]["open_sessions"]
        async with agent(url, dev) as four:
            # The agents ended their sessions, and the gateway ended theirs upstream.
            async def closed() -> bool:
                return first not in (await session_info(four))["open_sessions"]

            with anyio.fail_after(10):
                while not await closed():
                    await anyio.sleep(0.1)


async def test_the_caller_is_the_agent_token_name_and_cannot_approve_itself(
    gateway: Any, service: Any
) -> None:
    # The agent's token is named alice, like the approver: the rule is by name.
    agent_token = service.token("agent", "alice")
    alice = service.client(service.token("approver", "alice"))
    bob = service.client(service.token("approver", "bob"))
    with gateway() as url:
        async with agent(url, agent_token) as session, calling(session, HELD, {}) as results:
            request = await pending_request(bob, "alice", HELD)
            own = alice.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
            assert own.status_code == 403
            assert own.json()["error"]["code"] == "not_allowed_to_decide"
            ok = bob.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
            assert ok.status_code == 200, ok.text
    [result] = results
    assert not result.is_error, text_of(result)
    assert text_of(result) == "This is a simple text response for testing."
    assert bob.get(f"/requests/{request['id']}").json()["decided_by"] == "bob"


async def test_a_pending_call_hands_back_and_its_retry_runs_once_approved(
    gateway: Any, service: Any
) -> None:
    token = service.token("agent", "retry-bot")
    bob = service.client(service.token("approver", "bob"))
    with gateway(policy(hold="1s")) as url:
        async with agent(url, token) as session:
            first = await session.call_tool(HELD, {})
            assert first.is_error and "pending approval" in text_of(first)
            request = await pending_request(bob, "retry-bot", HELD)
            assert request["id"] in text_of(first)
            bob.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
            retry = await session.call_tool(HELD, {})
            assert not retry.is_error, text_of(retry)


async def test_grant_limits_follow_the_token_and_session_limits_the_mcp_session(
    gateway: Any, service: Any
) -> None:
    ci, dev = service.token("agent", "limits-ci"), service.token("agent", "limits-dev")
    with gateway() as url:
        async with agent(url, ci) as ci_1, agent(url, ci) as ci_2, agent(url, dev) as dev_1:
            assert not (await ci_1.call_tool("test_image_content", {})).is_error
            # scope: grant counts per token name, across its sessions...
            for session in (ci_1, ci_2):
                limited = await session.call_tool("test_image_content", {})
                assert limited.is_error and "limit" in text_of(limited).lower()
            assert not (await dev_1.call_tool("test_image_content", {})).is_error
            # ...scope: session per MCP session, whoever holds it.
            assert not (await ci_1.call_tool("test_audio_content", {})).is_error
            assert (await ci_1.call_tool("test_audio_content", {})).is_error
            assert not (await ci_2.call_tool("test_audio_content", {})).is_error


async def test_deny_and_hide_apply_over_http(gateway: Any, service: Any) -> None:
    with gateway() as url:
        async with agent(url, service.token("agent", "policy-bot")) as session:
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert "session_info" in names and "json_schema_2020_12_tool" not in names
            denied = await session.call_tool("test_error_handling", {})
            assert denied.is_error and "no errors today" in text_of(denied)
            hidden = await session.call_tool("json_schema_2020_12_tool", {})
            assert hidden.is_error and "hidden by policy" in text_of(hidden)


def initialize_body() -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "curl", "version": "1"},
        },
    }


def test_only_agent_tokens_admit_an_agent(gateway: Any, service: Any) -> None:
    accept = {"Accept": "application/json, text/event-stream"}

    def initialize(url: str, token: str | None) -> httpx.Response:
        headers = {**accept, **({"Authorization": f"Bearer {token}"} if token else {})}
        return httpx.post(url, json=initialize_body(), headers=headers)

    with gateway() as url:
        for token in (None, "so_not-a-token"):
            response = initialize(url, token)
            assert response.status_code == 401, response.text
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.json()["error"]["code"] in ("unauthorized", "invalid_token")
        # Valid tokens, but not an agent's: a gateway token in an agent's hands could
        # queue and claim requests on the service.
        for role in ("gateway", "approver", "admin"):
            response = initialize(url, service.token(role, f"not-an-agent-{role}"))
            assert response.status_code == 403, response.text
            assert response.json()["error"]["code"] == "insufficient_scope"
            assert "agent-role tokens" in response.json()["error"]["message"]
        ok = initialize(url, service.token("agent", "curl"))
        assert ok.status_code == 200 and ok.headers["mcp-session-id"]


async def test_without_agent_auth_every_agent_is_the_gateway_identity(
    gateway: Any, service: Any
) -> None:
    bob = service.client(service.token("approver", "bob"))
    with gateway(policy(hold="0.5s"), "--agent-auth", "none", "--agent", "lone-agent") as url:
        async with agent(url, None) as session:
            result = await session.call_tool(HELD, {})
            assert result.is_error and "pending approval" in text_of(result)
    request = await pending_request(bob, "lone-agent", HELD)
    assert request["caller"] == "lone-agent"


async def test_a_stdio_agent_reaches_an_http_upstream(service: Any, upstream_url: str) -> None:
    service.enforce(policy())
    args = [
        "gateway", "--service", service.url,
        "--token", service.token("gateway", "stdio-bot"),
        "--upstream-url", upstream_url, "--upstream-header", f"Authorization: {UPSTREAM_BEARER}",
    ]  # fmt: skip
    params = StdioServerParameters(command=SIGNOFF, args=args)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert "test_simple_text" in names and "json_schema_2020_12_tool" not in names
        info = await session_info(session)
        assert info["authorization"] == UPSTREAM_BEARER
        denied = await session.call_tool("test_error_handling", {})
        assert denied.is_error and "no errors today" in text_of(denied)


async def test_a_stdio_upstream_served_over_http_runs_one_process_per_session(
    service: Any, tmp_path: Path
) -> None:
    everything = [*mcp_server_command("mcp-server-everything"), "stdio"]
    port = free_port()
    service.enforce({"version": "1", "default": "allow"})
    token = service.token("gateway", "gw-everything")
    args = [
        SIGNOFF, "gateway", "--service", service.url, "--token", token,
        "--listen", f"127.0.0.1:{port}", "--", *everything,
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}/mcp"
    agent_token = service.token("agent", "everything-bot")
    with running(args, port, tmp_path / "gateway.log"):
        async with agent(url, agent_token) as one, agent(url, agent_token) as two:
            for session, word in ((one, "one"), (two, "two")):
                echo = await session.call_tool("echo", {"message": word})
                assert text_of(echo) == f"Echo: {word}"


MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {
        "extensions": {"io.modelcontextprotocol/tasks": {}}
    },
}


async def test_a_2026_agent_over_http_gets_rounds_that_complete_once_approved(
    gateway: Any, service: Any
) -> None:
    token = service.token("agent", "rounds-bot")
    bob = service.client(service.token("approver", "bob"))

    async def approve() -> None:
        request = await pending_request(bob, "rounds-bot", HELD)
        await anyio.sleep(2)  # the client is a round or two in
        bob.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})

    with gateway(policy(hold="1s")) as url:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
            anyio.create_task_group() as tg,
        ):
            assert client.protocol_version == "2026-07-28"
            tg.start_soon(approve)
            result = await client.call_tool(HELD, {})
    assert not result.is_error, text_of(result)
    assert text_of(result) == "This is a simple text response for testing."


async def raw_call(http: httpx2.AsyncClient, url: str, method: str, params: dict[str, Any]) -> Any:
    """One 2026-07-28 JSON-RPC request over streamable HTTP, declaring the tasks extension."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": MODERN_META}}
    name = params.get("name") or params.get("taskId") or ""
    headers = {
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": method,
        "Mcp-Name": name,
        "Accept": "application/json, text/event-stream",
    }
    answer = await http.post(url, json=body, headers=headers)
    # A JSON-RPC error comes with HTTP 400 on the 2026-07-28 transport.
    assert answer.status_code in (200, 400), answer.text
    return answer.json()


async def test_a_task_belongs_to_the_agent_token_that_created_it(
    gateway: Any, service: Any
) -> None:
    ci, dev = service.token("agent", "task-ci"), service.token("agent", "task-dev")
    bob = service.client(service.token("approver", "bob"))
    with gateway() as url:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {ci}"}, timeout=30) as mine,
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {dev}"}, timeout=30) as theirs,
        ):
            created = await raw_call(mine, url, "tools/call", {"name": HELD, "arguments": {}})
            task_id = created["result"]["taskId"]
            for method in ("tasks/get", "tasks/cancel"):
                stranger = await raw_call(theirs, url, method, {"taskId": task_id})
                assert stranger["error"]["code"] == -32602
            request = await pending_request(bob, "task-ci", HELD)
            assert request["status"] == "pending"  # the stranger's cancel withdrew nothing
            bob.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
            with anyio.fail_after(20):
                while True:
                    task = (await raw_call(mine, url, "tasks/get", {"taskId": task_id}))["result"]
                    if task["status"] != "working":
                        break
                    await anyio.sleep(0.2)
    assert task["status"] == "completed"
    assert task["result"]["content"][0]["text"] == "This is a simple text response for testing."


async def test_the_preview_runs_on_the_agents_own_upstream_session(
    gateway: Any, service: Any
) -> None:
    bob = service.client(service.token("approver", "bob"))
    with gateway(policy(preview={"tool": "session_info"})) as url:
        async with (
            agent(url, service.token("agent", "preview-bot")) as mine,
            agent(url, service.token("agent", "other-bot")) as other,
        ):
            own = (await session_info(mine))["session"]
            assert own != (await session_info(other))["session"]
            async with anyio.create_task_group() as tg:
                tg.start_soon(mine.call_tool, HELD, {})
                request = await pending_request(bob, "preview-bot", HELD)
                preview = request["preview"]
                assert preview["status"] == "ok", preview
                # The upstream saw the preview on the held call's session, not another.
                assert json.loads(preview["text"])["session"] == own
                bob.post(f"/requests/{request['id']}/decisions", json={"decision": "reject"})
