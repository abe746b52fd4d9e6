"""Tasks are bound to the caller that created them (a real service behind a real gate)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from support import pending_request

from gateway_plugin.gate import ApprovalGate, ToolCall
from gateway_plugin.policy import parse_policy
from gateway_plugin.service_client import ServiceClient
from gateway_plugin.tasks import TaskBoard

pytestmark = pytest.mark.anyio

POLICY = {
    "version": "1",
    "default": "allow",
    "approvers": {"alice": {}},
    "tools": {"deploy": {"action": "require_approval", "approvers": ["alice"]}},
}


async def test_only_the_caller_that_created_a_task_can_read_or_cancel_it(service: Any) -> None:
    service.enforce(POLICY)
    client = ServiceClient(service.url, service.token("gateway", "gw-task-board"))
    gate = ApprovalGate(parse_policy(POLICY), client, agent="gw-default")
    board = TaskBoard(gate)
    ran: list[str] = []

    async def forward() -> types.CallToolResult:
        ran.append("deploy")
        return types.CallToolResult(content=[types.TextContent(text="deployed")])

    async def forward_with(arguments: Mapping[str, Any]) -> types.CallToolResult:
        ran.append(f"deploy {dict(arguments)}")
        return types.CallToolResult(content=[types.TextContent(text="deployed")])

    try:
        call = ToolCall(tool="deploy", caller="ci-bot")
        created = await board.start(call, gate.evaluate(call), forward, forward_with)
        assert isinstance(created, dict) and created["resultType"] == "task"
        task_id = created["taskId"]
        for caller in ("dev-bot", "", "ci-bot "):
            for act in (board.get, board.cancel):
                with pytest.raises(MCPError) as caught:
                    await act(task_id, caller)
                # Exactly what an unknown id gets: no task is confirmed to exist.
                assert caught.value.error.code == types.INVALID_PARAMS
                assert caught.value.error.message == "Failed to retrieve task: Task not found"
        mine = await board.get(task_id, "ci-bot")
        assert mine["status"] == "working"
        alice = service.client(service.token("approver", "alice"))
        request = await client.get((await pending_request(alice, "ci-bot", "deploy"))["id"])
        assert request.status == "pending"
        # Ids are fresh randomness, never reused.
        again = ToolCall(tool="deploy", caller="ci-bot", arguments={"n": 1})
        other = await board.start(again, gate.evaluate(again), forward, forward_with)
        assert isinstance(other, dict) and other["taskId"] != task_id
        await board.cancel(task_id, "ci-bot")
        await board.cancel(other["taskId"], "ci-bot")
        assert (await client.get(request.id)).status == "cancelled"
        assert ran == []
    finally:
        await client.aclose()
