"""The gateway learns decisions by push over the websocket, and long-polls when it cannot.

Runs `DecisionStream` and `ApprovalGate` in-process against a real service process.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp_types import CallToolResult, TextContent
from netproxy import NoWebsocketProxy
from support import ServiceProcess, text_of

from gateway_plugin.decision_stream import DecisionStream, events_url
from gateway_plugin.gate import ApprovalGate, ToolCall
from gateway_plugin.policy import parse_policy
from gateway_plugin.service_client import ServiceClient
from gateway_plugin.wire import ApprovalRequestView

pytestmark = pytest.mark.anyio

DOCUMENT = {
    "version": "1",
    "default": "deny",
    "approvers": {"alice": {}, "bob": {}},
    "tools": {
        "deploy": {"action": "require_approval", "approvers": ["alice"]},
        "deploy_twice": {"action": "require_approval", "approvers": ["alice", "bob"], "quorum": 2},
    },
}
POLICY = parse_policy(DOCUMENT)


class CountingClient(ServiceClient):
    """The real client, counting how the gate asked about decisions."""

    def __init__(self, base_url: str, token: str) -> None:
        super().__init__(base_url, token)
        self.waits = 0
        self.gets = 0
        self.claims = 0

    async def wait(self, request_id: str, timeout: float) -> ApprovalRequestView:
        self.waits += 1
        return await super().wait(request_id, timeout)

    async def get(self, request_id: str) -> ApprovalRequestView:
        self.gets += 1
        return await super().get(request_id)

    async def claim(self, request_id: str) -> ApprovalRequestView:
        self.claims += 1
        return await super().claim(request_id)


@pytest.fixture(scope="module")
def tokens(service: ServiceProcess) -> dict[str, str]:
    service.enforce(DOCUMENT)  # the gate's policy is the service's
    return {
        "gateway": service.token("gateway", "gw-push"),
        "alice": service.token("approver", "alice"),
    }


@pytest.fixture
async def alice(
    service: ServiceProcess, tokens: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"{service.url}/api/v1", headers={"Authorization": f"Bearer {tokens['alice']}"}
    ) as client:
        yield client


async def pending_id(alice: httpx.AsyncClient, caller: str) -> str:
    with anyio.fail_after(10):
        while True:
            page = (await alice.get("/requests", params={"status": "pending"})).json()
            mine = [item["id"] for item in page["items"] if item["caller"] == caller]
            if mine:
                return str(mine[0])
            await anyio.sleep(0.01)


async def ran() -> CallToolResult:
    return CallToolResult(content=[TextContent(text="deployed")])


def test_the_events_url_follows_the_service_url() -> None:
    assert events_url("http://127.0.0.1:8000/") == "ws://127.0.0.1:8000/api/v1/events"
    assert events_url("https://signoff.example") == "wss://signoff.example/api/v1/events"


async def test_a_waiter_wakes_on_the_settling_decision_only(
    service: ServiceProcess, tokens: dict[str, str], alice: httpx.AsyncClient
) -> None:
    gateway = ServiceClient(service.url, tokens["gateway"])
    async with DecisionStream(service.url, tokens["gateway"]) as stream:
        assert await stream.wait_until_connected(5)
        body = {"tool": "deploy_twice", "caller": "agent-q", "arguments": {}}
        request = (await gateway._call("POST", "/requests", json=body))["id"]
        # One vote of two: the request is still pending, so the waiter sleeps on.
        await alice.post(f"/requests/{request}/decisions", json={"decision": "approve"})
        assert await stream.wait_for(request, 0.5) is None

        async def reject_soon() -> None:
            await anyio.sleep(0.1)
            await gateway._call("POST", f"/requests/{request}/cancel")

        async with anyio.create_task_group() as tg:
            tg.start_soon(reject_soon)
            settled = await stream.wait_for(request, 5)
        assert settled == {"id": request, "status": "cancelled", "decided_by": "gw-push"}
        # Announced before anyone waited: still found.
        assert await stream.wait_for(request, 0.01) == settled
    await gateway.aclose()


async def test_the_gate_resumes_by_push_without_long_polling(
    service: ServiceProcess, tokens: dict[str, str], alice: httpx.AsyncClient
) -> None:
    client = CountingClient(service.url, tokens["gateway"])
    async with DecisionStream(service.url, tokens["gateway"]) as stream:
        assert await stream.wait_until_connected(5)
        gate = ApprovalGate(POLICY, client, agent="agent-push", decisions=stream, hold_seconds=20)
        results: list[CallToolResult] = []
        finished = 0.0

        async def call() -> None:
            nonlocal finished
            results.append(await gate.handle(ToolCall("deploy", {"env": "prod"}), ran))
            finished = time.perf_counter()

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            request = await pending_id(alice, "agent-push")
            await anyio.sleep(0.2)
            assert results == []
            decided = time.perf_counter()
            await alice.post(f"/requests/{request}/decisions", json={"decision": "approve"})
    [result] = results
    assert not result.is_error and text_of(result) == "deployed"
    # Pushed, then confirmed by the service accepting the claim: no polling, no extra GET.
    assert (client.waits, client.gets, client.claims) == (0, 0, 1)
    assert finished - decided < 0.2
    await client.aclose()


async def test_with_websockets_blocked_the_gate_long_polls(
    service: ServiceProcess, tokens: dict[str, str], alice: httpx.AsyncClient
) -> None:
    with NoWebsocketProxy(service.port) as proxy:
        client = CountingClient(proxy.url, tokens["gateway"])
        async with DecisionStream(proxy.url, tokens["gateway"], max_backoff=0.5) as stream:
            gate = ApprovalGate(POLICY, client, agent="agent-poll", decisions=stream)
            results: list[CallToolResult] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: _append(results, gate.handle(ToolCall("deploy", {}), ran)))
                request = await pending_id(alice, "agent-poll")
                await anyio.sleep(0.3)
                await alice.post(
                    f"/requests/{request}/decisions",
                    json={"decision": "reject", "comment": "not today"},
                )
            assert not stream.connected and proxy.refused_upgrades >= 1
    [result] = results
    assert result.is_error and "rejected by alice" in text_of(result)
    assert "not today" in text_of(result)
    assert client.waits >= 1
    await client.aclose()


async def _append(results: list[CallToolResult], coro: Any) -> None:
    results.append(await coro)


async def test_a_socket_lost_mid_hold_falls_back_to_the_long_poll(
    service: ServiceProcess, tokens: dict[str, str], alice: httpx.AsyncClient
) -> None:
    client = CountingClient(service.url, tokens["gateway"])
    stream = DecisionStream(service.url, tokens["gateway"])
    stream.start()
    assert await stream.wait_until_connected(5)
    gate = ApprovalGate(POLICY, client, agent="agent-drop", decisions=stream)
    results: list[CallToolResult] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _append(results, gate.handle(ToolCall("deploy", {"n": 1}), ran)))
        request = await pending_id(alice, "agent-drop")
        await anyio.sleep(0.1)
        await stream.aclose()  # the socket goes away while the call is held
        await anyio.sleep(0.2)
        assert client.waits >= 1
        await alice.post(f"/requests/{request}/decisions", json={"decision": "approve"})
    [result] = results
    assert not result.is_error
    await client.aclose()


async def test_the_stream_reconnects_with_backoff_after_a_restart(tmp_path: Path) -> None:
    proc = ServiceProcess(tmp_path / "restart.db")
    proc.start()
    try:
        token = proc.token("gateway", "gw-restart")
        async with DecisionStream(proc.url, token, max_backoff=0.5) as stream:
            assert await stream.wait_until_connected(5)
            proc.stop()
            with anyio.fail_after(5):
                while stream.connected:
                    await anyio.sleep(0.02)
            await anyio.sleep(0.5)  # a few failed attempts while it is down
            proc.start()
            assert await stream.wait_until_connected(5)
            assert stream.connects == 2
    finally:
        proc.stop()


async def test_a_refused_token_never_connects(service: ServiceProcess) -> None:
    async with DecisionStream(service.url, "so_not-a-token", max_backoff=0.2) as stream:
        await anyio.sleep(0.5)
        assert not stream.connected and stream.connects == 0
