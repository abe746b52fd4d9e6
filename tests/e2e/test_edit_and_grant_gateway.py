"""An agent's held call runs as the approver changed it, and a grant lets calls through.

The real `signoff gateway` (stdio) in front of the real `server-everything` MCP server,
with the official MCP client as the agent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from support import pending_request, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


def echo_policy() -> dict[str, Any]:
    return {
        "version": "1",
        "default": "allow",
        "approvers": {"alice": {}, "bob": {}},
        "approver_groups": {"qa-leads": {"members": ["alice", "bob"]}},
        "tools": {"echo": {"action": "require_approval", "approvers": "qa-leads", "hold": "20s"}},
    }


@pytest.fixture(scope="module")
def alice(service: Any) -> httpx.Client:
    return service.client(service.token("approver", "alice"))


async def test_the_call_runs_with_the_arguments_alice_approved(
    open_gateway: Any, everything_command: list[str], alice: httpx.Client, agent_name: str
) -> None:
    results: list[types.CallToolResult] = []
    async with open_gateway(echo_policy(), agent_name, upstream=everything_command) as agent:

        async def call() -> None:
            results.append(await agent.call_tool("echo", {"message": "drop the database"}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            request = await pending_request(alice, agent_name, "echo")
            edited = alice.post(
                f"/requests/{request['id']}/decisions",
                json={"decision": "approve", "arguments": {"message": "say hello"}},
            )
            assert edited.status_code == 200, edited.text
    [result] = results
    text = text_of(result)
    assert not result.is_error
    assert "Echo: say hello" in text and "drop the database" not in text.split("Signoff:")[0]
    assert "alice changed the arguments before approving (changed: message)" in text
    meta = (result.meta or {})["signoff"]
    assert meta["edited_by"] == "alice" and meta["changed_keys"] == ["message"]
    assert meta["arguments"] == {"message": "drop the database"}
    assert meta["approved_arguments"] == {"message": "say hello"}
    assert meta["approved_arguments_hash"] == edited.json()["approved_arguments_hash"]


def _grant(alice: httpx.Client, caller: str, **extra: Any) -> dict[str, Any]:
    created = alice.post(
        "/grants", json={"tool": "echo", "caller": caller, "expires_in_seconds": 3600, **extra}
    )
    assert created.status_code == 201, created.text
    return dict(created.json())


async def test_a_grant_lets_calls_through_until_it_is_revoked(
    open_gateway: Any,
    everything_command: list[str],
    alice: httpx.Client,
    agent_name: str,
    service: Any,
) -> None:
    policy = echo_policy()
    policy["tools"]["echo"]["hold"] = "1s"
    auditor = service.client(service.token("auditor", f"audit-{agent_name}"))
    async with open_gateway(policy, agent_name, upstream=everything_command) as agent:
        held = await agent.call_tool("echo", {"message": "before"})
        assert held.is_error and "pending approval" in text_of(held)

        grant = _grant(alice, agent_name)
        for n in range(3):
            ran = await agent.call_tool("echo", {"message": f"granted {n}"})
            assert not ran.is_error and text_of(ran) == f"Echo: granted {n}"
        # Each call is one grant.used event, and no request: only the first call made one.
        mine = [r for r in alice.get("/requests").json()["items"] if r["caller"] == agent_name]
        assert len(mine) == 1
        log = auditor.get("/audit/export", params={"format": "jsonl", "tool": "echo"}).text
        assert sum(grant["id"] in line and "grant.used" in line for line in log.splitlines()) == 3

        assert alice.delete(f"/grants/{grant['id']}").status_code == 200
        after = await agent.call_tool("echo", {"message": "after"})
        assert after.is_error and "pending approval" in text_of(after)


async def test_a_grant_for_another_caller_covers_nothing(
    open_gateway: Any, everything_command: list[str], alice: httpx.Client, agent_name: str
) -> None:
    policy = echo_policy()
    policy["tools"]["echo"]["hold"] = "1s"
    grant = _grant(alice, f"{agent_name}-other", max_uses=5)
    async with open_gateway(policy, agent_name, upstream=everything_command) as agent:
        held = await agent.call_tool("echo", {"message": "mine"})
    assert held.is_error and "pending approval" in text_of(held)
    listed = {g["id"]: g for g in alice.get("/grants").json()["items"]}
    assert listed[grant["id"]]["uses"] == 0


async def test_a_grant_stops_at_the_gateway_once_its_creators_token_is_revoked(
    open_gateway: Any, everything_command: list[str], agent_name: str, service: Any
) -> None:
    policy = echo_policy()
    policy["tools"]["echo"]["hold"] = "1s"
    dave_name = f"dave-{agent_name}"
    policy["approvers"][dave_name] = {}
    policy["approver_groups"]["qa-leads"]["members"].append(dave_name)
    dave = service.client(service.token("approver", dave_name))
    auditor = service.client(service.token("auditor", f"audit-revoked-{agent_name}"))
    async with open_gateway(policy, agent_name, upstream=everything_command) as agent:
        grant = _grant(dave, agent_name)
        ran = await agent.call_tool("echo", {"message": "while dave may"})
        assert not ran.is_error and text_of(ran) == "Echo: while dave may"

        revoked = subprocess.run(
            [sys.executable, "-m", "approvals.cli.main", "tokens", "revoke", dave_name,
             "--db", service.db_url],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert revoked.returncode == 0, revoked.stderr
        after = await agent.call_tool("echo", {"message": "after dave left"})
        assert after.is_error and "pending approval" in text_of(after)
    log = auditor.get("/audit/export", params={"format": "jsonl", "tool": "echo"}).text
    ended = [
        json.loads(line)
        for line in log.splitlines()
        if grant["id"] in line and "grant.revoked" in line
    ]
    assert [(e["actor"], e["channel"]) for e in ended] == [("system", "gateway")]
    assert "no longer holds a live API token" in ended[0]["comment"]
