"""Approvers see what a held call will do: the rule's read-only preview call, made by the
real `signoff gateway` on the agent's own session of the real Playwright MCP server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from support import calling, pending_request, start_codegen, text_of

from gateway_plugin.policy import canonical_arguments_hash

pytestmark = pytest.mark.anyio

END = "end_codegen_session"


def _preview(session_id: str = "{sessionId}") -> dict[str, Any]:
    return {"tool": "get_codegen_session", "arguments": {"sessionId": session_id}}


async def test_alice_reads_the_codegen_session_before_she_approves(
    open_gateway: Any, policy: Any, agent_name: str, alice: Any, tmp_path: Path
) -> None:
    out_dir = tmp_path / "generated"
    async with open_gateway(policy(preview=_preview()), agent_name) as agent:
        session_id = await start_codegen(agent, out_dir, prefix="Previewed")
        async with calling(agent, END, {"sessionId": session_id}) as results:
            request = await pending_request(alice, agent_name, END)
            preview = request["preview"]
            assert preview["status"] == "ok", preview
            assert preview["error"] is None
            # What the real server says about this very session.
            assert session_id in preview["text"] and str(out_dir) in preview["text"]
            # Display only: the approval binds the arguments, not what the preview said.
            assert request["arguments_hash"] == canonical_arguments_hash({"sessionId": session_id})
            alice.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
    [result] = results
    assert not result.is_error, text_of(result)
    assert len(list(out_dir.glob("*"))) == 1


async def test_a_failed_preview_is_shown_as_failed_and_the_call_still_waits_for_a_human(
    open_gateway: Any, policy: Any, agent_name: str, bob: Any, tmp_path: Path
) -> None:
    out_dir = tmp_path / "generated"
    # The preview asks the server about a session that does not exist: a tool error.
    held = policy(preview=_preview("no-such-{sessionId}"))
    async with open_gateway(held, agent_name) as agent:
        session_id = await start_codegen(agent, out_dir)
        async with calling(agent, END, {"sessionId": session_id}) as results:
            request = await pending_request(bob, agent_name, END)
            assert request["status"] == "pending"
            preview = request["preview"]
            assert preview["status"] == "failed"
            assert "get_codegen_session" in preview["error"]
            await anyio.sleep(0.3)
            assert results == []
            bob.post(
                f"/requests/{request['id']}/decisions",
                json={"decision": "reject", "comment": "no session to look at"},
            )
    [result] = results
    assert result.is_error and "no session to look at" in text_of(result)
    assert list(out_dir.glob("*")) == []


async def test_a_preview_naming_a_missing_argument_fails_without_calling_anything(
    open_gateway: Any, policy: Any, agent_name: str, alice: Any, tmp_path: Path
) -> None:
    held = policy(preview={"tool": "get_codegen_session", "arguments": {"sessionId": "{nope}"}})
    async with open_gateway(held, agent_name) as agent:
        session_id = await start_codegen(agent, tmp_path / "out")
        async with anyio.create_task_group() as tg:

            async def call_end() -> None:
                await agent.call_tool(END, {"sessionId": session_id})

            tg.start_soon(call_end)
            request = await pending_request(alice, agent_name, END)
            assert request["preview"] == {
                "status": "failed",
                "text": None,
                "error": "the call has no argument 'nope' for the preview",
            }
            alice.post(f"/requests/{request['id']}/decisions", json={"decision": "reject"})
