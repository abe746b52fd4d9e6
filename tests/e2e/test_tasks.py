"""A client that declares the tasks extension gets a task for a held call, and polls it.

The SDK client has no side of `io.modelcontextprotocol/tasks` yet, so the agent
speaks raw JSON-RPC lines (2026-07-28 envelope) to the real `signoff gateway`
in front of the real server-everything.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from modern_agents import events_of, held_echo, raw_agent
from support import pending_request

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def token(service: Any) -> str:
    return str(service.token("gateway", "gw-tasks"))


ECHO = {"name": "echo", "arguments": {"message": "ship it"}}


async def settled(agent: Any, task_id: str) -> dict[str, Any]:
    """Poll tasks/get until the task leaves `working`."""
    with anyio.fail_after(30):
        while True:
            task = (await agent.request("tasks/get", {"taskId": task_id}))["result"]
            if task["status"] != "working":
                return dict(task)
            await anyio.sleep(0.2)


async def test_a_held_call_is_a_task_that_completes_with_the_real_result_on_a_quorum(
    service: Any, token: str, alice: Any, bob: Any, auditor: Any, everything_command: list[str],
    agent_name: str,
) -> None:  # fmt: skip
    service.enforce(held_echo("20s", quorum=2))
    async with raw_agent(service, token, agent_name, everything_command) as agent:
        started = time.monotonic()
        created = (await agent.request("tools/call", ECHO))["result"]
        # At once, not after the 20 s hold.
        assert time.monotonic() - started < 10
        assert created["resultType"] == "task" and created["status"] == "working"
        assert created["statusMessage"] == "waiting for approval by qa-leads, 0 of 2"
        assert {"taskId", "createdAt", "lastUpdatedAt", "ttlMs", "pollIntervalMs"} <= set(created)
        assert len(created["taskId"]) >= 32
        task_id = created["taskId"]
        request = await pending_request(alice, agent_name, "echo")

        alice.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
        with anyio.fail_after(10):
            while True:
                task = (await agent.request("tasks/get", {"taskId": task_id}))["result"]
                if task["statusMessage"].endswith("1 of 2"):
                    break
                await anyio.sleep(0.3)
        assert task["status"] == "working" and task["resultType"] == "complete"
        assert task["statusMessage"] == "waiting for approval by qa-leads, 1 of 2"

        bob.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
        done = await settled(agent, task_id)
    assert done["status"] == "completed"
    assert done["result"]["content"] == [{"type": "text", "text": "Echo: ship it"}]
    assert done["result"]["isError"] is False
    assert len(await events_of(auditor, request["id"], "call.forwarded")) == 1


async def test_a_rejected_call_is_a_completed_task_whose_result_is_the_tool_error(
    service: Any, token: str, alice: Any, auditor: Any, everything_command: list[str],
    agent_name: str,
) -> None:  # fmt: skip
    service.enforce(held_echo("20s"))
    async with raw_agent(service, token, agent_name, everything_command) as agent:
        task_id = (await agent.request("tools/call", ECHO))["result"]["taskId"]
        request = await pending_request(alice, agent_name, "echo")
        body = {"decision": "reject", "comment": "not on a Friday"}
        alice.post(f"/requests/{request['id']}/decisions", json=body)
        done = await settled(agent, task_id)
    assert done["status"] == "completed" and done["result"]["isError"] is True
    assert "not on a Friday" in done["result"]["content"][0]["text"]
    assert await events_of(auditor, request["id"], "call.forwarded") == []


async def test_cancelling_a_task_withdraws_its_request_in_the_callers_name(
    service: Any, token: str, alice: Any, auditor: Any, everything_command: list[str],
    agent_name: str,
) -> None:  # fmt: skip
    service.enforce(held_echo("20s"))
    async with raw_agent(service, token, agent_name, everything_command) as agent:
        task_id = (await agent.request("tools/call", ECHO))["result"]["taskId"]
        request = await pending_request(alice, agent_name, "echo")
        cancelled = await agent.request("tasks/cancel", {"taskId": task_id})
        assert cancelled["result"]["resultType"] == "complete"
        task = (await agent.request("tasks/get", {"taskId": task_id}))["result"]
        assert task["status"] == "cancelled"
    shown = alice.get(f"/requests/{request['id']}").json()
    assert shown["status"] == "cancelled"
    [event] = await events_of(auditor, request["id"], "request.cancelled")
    assert event["actor"] == agent_name and event["channel"] == "gateway"
    # Too late to approve it now; it never runs.
    late = alice.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
    assert late.status_code == 409
    assert await events_of(auditor, request["id"], "call.forwarded") == []


async def test_unknown_task_ids_and_undeclared_clients_get_errors_and_no_task(
    service: Any, token: str, everything_command: list[str], agent_name: str
) -> None:
    service.enforce(held_echo("1s"))
    async with raw_agent(service, token, agent_name, everything_command) as agent:
        created = (await agent.request("tools/call", ECHO))["result"]
        for method in ("tasks/get", "tasks/cancel"):
            for made_up in ("nope", created["taskId"][:-1] + "x", "x" * 300):
                error = (await agent.request(method, {"taskId": made_up}))["error"]
                assert error["code"] == -32602
            # A client that does not declare the extension may not touch tasks at all...
            error = await agent.request(method, {"taskId": created["taskId"]}, extensions=False)
            assert error["error"]["code"] == -32021
        # ...and never gets one: its held call comes back as a round.
        plain = (await agent.request("tools/call", ECHO, extensions=False))["result"]
        assert plain["resultType"] == "input_required" and "taskId" not in plain
        # Advertised where 2026-07-28 clients look.
        discovered = (await agent.request("server/discover"))["result"]
        assert "io.modelcontextprotocol/tasks" in discovered["capabilities"]["extensions"]


async def test_an_edited_approval_completes_the_task_with_the_approved_arguments(
    service: Any, token: str, alice: Any, auditor: Any, everything_command: list[str],
    agent_name: str,
) -> None:  # fmt: skip
    service.enforce(held_echo("20s"))
    call = {"name": "echo", "arguments": {"message": "drop the database"}}
    async with raw_agent(service, token, agent_name, everything_command) as agent:
        task_id = (await agent.request("tools/call", call))["result"]["taskId"]
        request = await pending_request(alice, agent_name, "echo")
        body = {"decision": "approve", "arguments": {"message": "say hello"}}
        assert alice.post(f"/requests/{request['id']}/decisions", json=body).status_code == 200
        done = await settled(agent, task_id)
    assert done["status"] == "completed" and done["result"]["isError"] is False
    texts = [block["text"] for block in done["result"]["content"]]
    assert texts[0] == "Echo: say hello"
    assert texts[1].startswith("Signoff: alice changed the arguments before approving")
    signoff = done["result"]["_meta"]["signoff"]
    assert signoff["changed_keys"] == ["message"]
    assert signoff["arguments"] == {"message": "drop the database"}
    assert len(await events_of(auditor, request["id"], "call.forwarded")) == 1
