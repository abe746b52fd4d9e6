"""An agent's refused calls through the real `signoff gateway` end up in the audit log."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from support import free_port, text_of

pytestmark = pytest.mark.anyio

POLICY = {
    "version": "1",
    "default": "deny",
    "hide": ["get-env"],
    "tools": {
        "echo": {"action": "deny", "reason": "no echoes here"},
        "get-sum": {
            "action": "allow",
            "audit": True,
            "limits": [{"counter": "sums", "window": "minute", "max": 1}],
        },
        "get-tiny-image": {"action": "allow"},
    },
}


async def audit_of(auditor: Any, agent: str, count: int) -> list[dict[str, Any]]:
    """The agent's events, once `count` have arrived (the gateway reports in the background)."""
    with anyio.fail_after(15):
        while True:
            events = auditor.get("/audit/export", params={"format": "json"}).json()
            mine = [e for e in events if e["caller"] == agent]
            if len(mine) >= count:
                return mine
            await anyio.sleep(0.1)


async def test_denied_hidden_rate_limited_and_audited_calls_are_recorded(
    open_gateway: Any, everything_command: list[str], agent_name: str, service: Any
) -> None:
    auditor = service.client(service.token("auditor", f"auditor-{agent_name}"))
    async with open_gateway(POLICY, agent_name, upstream=everything_command) as agent:
        echoed = await agent.call_tool("echo", {"message": "hi", "password": "hunter2"})
        assert echoed.is_error and "no echoes here" in text_of(echoed)
        summed = await agent.call_tool("get-sum", {"a": 1, "b": 2})
        assert not summed.is_error and "3" in text_of(summed)
        again = await agent.call_tool("get-sum", {"a": 1, "b": 2})
        assert again.is_error and "rate limit" in text_of(again)
        image = await agent.call_tool("get-tiny-image", {})
        assert not image.is_error
        started = time.monotonic()
        hidden = await agent.call_tool("get-env", {})
        assert hidden.is_error and time.monotonic() - started < 2
        events = await audit_of(auditor, agent_name, 4)

    assert [(e["type"], e["outcome"], e["tool"]) for e in events] == [
        ("policy.denied", "denied", "echo"),
        ("call.allowed", "allowed", "get-sum"),
        ("policy.rate_limited", "rate_limited", "get-sum"),
        ("policy.denied", "hidden", "get-env"),
    ]
    assert events[0]["arguments"] == {"message": "hi", "password": "***"}
    assert events[0]["policy_key"] == "echo" and events[0]["comment"] == "no echoes here"
    assert events[1]["arguments"] == {"a": 1, "b": 2}
    assert {(e["actor"], e["channel"]) for e in events} == {("gw-e2e", "gateway")}


async def test_with_the_service_down_refusals_are_still_immediate(
    open_gateway: Any, everything_command: list[str], agent_name: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with open_gateway(
        POLICY, agent_name, service_url=dead, upstream=everything_command
    ) as agent:
        started = time.monotonic()
        for _ in range(5):
            refused = await agent.call_tool("echo", {"message": "hi"})
            assert refused.is_error and "no echoes here" in text_of(refused)
        summed = await agent.call_tool("get-sum", {"a": 2, "b": 2})
        assert not summed.is_error
        assert time.monotonic() - started < 2
