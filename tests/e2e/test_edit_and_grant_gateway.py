"""An agent's held call runs as the approver changed it, and a grant lets calls through.

The real `signoff gateway` (stdio) in front of the real `server-everything` MCP server,
with the official MCP client as the agent.
"""

from __future__ import annotations

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
