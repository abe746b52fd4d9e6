"""An agent drives the real Playwright MCP server through `signoff gateway`; people decide.

`end_codegen_session` writes a test file: it needs a QA lead's approval.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from support import ServiceProcess, calling, pending_request, requests_of, start_codegen, text_of

pytestmark = pytest.mark.anyio

# The service runs on SQLite, then on PostgreSQL (tests/conftest.py).
STORES = ("sqlite", "postgresql")

END = "end_codegen_session"


def written_tests(out_dir: Path) -> list[Path]:
    return sorted(p for p in out_dir.glob("*") if p.is_file())


async def test_alice_approves_and_the_real_server_writes_its_test_file(
    open_gateway: Any, policy: Any, agent_name: str, alice: Any, tmp_path: Path
) -> None:
    out_dir = tmp_path / "generated"
    async with open_gateway(policy(), agent_name) as agent:
        session_id = await start_codegen(agent, out_dir)
        async with calling(agent, END, {"sessionId": session_id}) as results:
            request = await pending_request(alice, agent_name, END)
            assert request["arguments"] == {"sessionId": session_id}
            assert request["approver_group"] == "qa-leads"
            assert request["reason"] == "writes a generated test file to disk"
            await anyio.sleep(0.3)
            assert results == [] and written_tests(out_dir) == []
            alice.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})

    [result] = results
    assert not result.is_error, text_of(result)
    assert "Generated test file" in text_of(result)
    [test_file] = written_tests(out_dir)
    assert "Signoff" in test_file.read_text()

    stored = alice.get(f"/requests/{request['id']}").json()
    assert stored["status"] == "approved" and stored["claimed_at"] is not None
    assert stored["outcome"]["is_error"] is False


async def test_bob_rejects_with_a_comment_and_the_agent_reads_it(
    open_gateway: Any, policy: Any, agent_name: str, bob: Any, tmp_path: Path
) -> None:
    out_dir = tmp_path / "generated"
    async with open_gateway(policy(), agent_name) as agent:
        session_id = await start_codegen(agent, out_dir)
        async with calling(agent, END, {"sessionId": session_id}) as results:
            request = await pending_request(bob, agent_name, END)
            bob.post(
                f"/requests/{request['id']}/decisions",
                json={"decision": "reject", "comment": "save it under e2e/ please"},
            )

    [result] = results
    assert result.is_error
    text = text_of(result)
    assert END in text and "rejected by bob" in text and "save it under e2e/ please" in text
    assert written_tests(out_dir) == []


async def test_a_held_call_hands_back_pending_and_its_retry_runs_once_approved(
    open_gateway: Any, policy: Any, agent_name: str, alice: Any, tmp_path: Path
) -> None:
    out_dir = tmp_path / "generated"
    async with open_gateway(policy(hold="1s"), agent_name) as agent:
        session_id = await start_codegen(agent, out_dir)
        started = time.monotonic()
        first = await agent.call_tool(END, {"sessionId": session_id})
        assert 0.9 < time.monotonic() - started < 10
        assert first.is_error
        [request] = requests_of(alice, agent_name, END)
        text = text_of(first)
        assert "pending approval" in text and request["id"] in text
        assert "qa-leads" in text and "Retry this identical call" in text
        assert written_tests(out_dir) == []

        alice.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
        retry = await agent.call_tool(END, {"sessionId": session_id})
        assert not retry.is_error, text_of(retry)
        assert len(written_tests(out_dir)) == 1
        assert [r["id"] for r in requests_of(alice, agent_name, END)] == [request["id"]]

        # The approval is used up: the identical call again needs a new approval.
        again = await agent.call_tool(END, {"sessionId": session_id})
        assert again.is_error and "pending approval" in text_of(again)
        newest = requests_of(alice, agent_name, END)
        assert len(newest) == 2 and newest[0]["id"] != request["id"]
        assert newest[0]["status"] == "pending"
        assert len(written_tests(out_dir)) == 1


async def test_a_retry_while_pending_attaches_to_the_same_request(
    open_gateway: Any, policy: Any, agent_name: str, alice: Any, tmp_path: Path
) -> None:
    async with open_gateway(policy(hold="0.5s"), agent_name) as agent:
        session_id = await start_codegen(agent, tmp_path / "out")
        for _ in range(3):
            result = await agent.call_tool(END, {"sessionId": session_id})
            assert result.is_error and "pending approval" in text_of(result)
    assert len(requests_of(alice, agent_name, END)) == 1


async def test_denied_and_hidden_tools_are_refused_at_once(
    open_gateway: Any, policy: Any, agent_name: str, alice: Any
) -> None:
    async with open_gateway(policy(), agent_name) as agent:
        names = [tool.name for tool in (await agent.list_tools()).tools]
        assert "playwright_evaluate" in names and END in names
        assert "playwright_console_logs" not in names

        started = time.monotonic()
        denied = await agent.call_tool("playwright_evaluate", {"script": "1+1"})
        hidden = await agent.call_tool("playwright_console_logs", {"type": "all"})
        assert time.monotonic() - started < 1.0
    assert denied.is_error and "playwright_evaluate" in text_of(denied)
    assert "arbitrary JS" in text_of(denied)
    assert hidden.is_error and "hidden by policy" in text_of(hidden)
    assert requests_of(alice, agent_name, "playwright_evaluate") == []


async def test_an_unanswered_request_expires_and_the_call_is_denied(
    open_gateway: Any, policy: Any, agent_name: str, tmp_path: Path
) -> None:
    out_dir = tmp_path / "generated"
    async with open_gateway(policy(timeout="1s", hold="15s"), agent_name) as agent:
        session_id = await start_codegen(agent, out_dir)
        result = await agent.call_tool(END, {"sessionId": session_id})
    assert result.is_error
    assert "expired without a decision" in text_of(result)
    assert written_tests(out_dir) == []


async def test_the_agent_cannot_approve_its_own_call(
    open_gateway: Any, policy: Any, alice: Any, tmp_path: Path
) -> None:
    async with open_gateway(policy(hold="0.5s"), "alice") as agent:
        session_id = await start_codegen(agent, tmp_path / "out")
        await agent.call_tool(END, {"sessionId": session_id})
        [request] = [r for r in requests_of(alice, "alice", END) if r["status"] == "pending"]
    refused = alice.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
    assert refused.status_code == 403


async def test_holding_sends_progress_and_a_cancelled_call_leaves_the_request_pending(
    open_gateway: Any, policy: Any, agent_name: str, alice: Any, tmp_path: Path
) -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with open_gateway(policy(), agent_name) as agent:
        session_id = await start_codegen(agent, tmp_path / "out")
        with anyio.move_on_after(1.5):
            await agent.call_tool(END, {"sessionId": session_id}, progress_callback=on_progress)
        [request] = requests_of(alice, agent_name, END)
        assert progress and request["id"] in (progress[0][2] or "")
        await anyio.sleep(0.3)
        assert alice.get(f"/requests/{request['id']}").json()["status"] == "pending"
        # The gateway stays usable after the cancellation.
        assert (await agent.list_tools()).tools


async def test_with_the_service_stopped_risky_calls_are_refused(
    open_gateway: Any, policy: Any, agent_name: str, tmp_path: Path
) -> None:
    down = ServiceProcess(tmp_path / "down.db")
    down.start()
    down.stop()
    out_dir = tmp_path / "generated"
    async with open_gateway(policy(), agent_name, service_url=down.url) as agent:
        session_id = await start_codegen(agent, out_dir)
        started = time.monotonic()
        result = await agent.call_tool(END, {"sessionId": session_id})
        assert time.monotonic() - started < 10
    assert result.is_error
    assert "could not reach the approval service" in text_of(result)
    assert END in text_of(result) and written_tests(out_dir) == []


async def test_calls_over_the_rate_limit_are_refused_with_a_clear_error(
    open_gateway: Any, policy: Any, agent_name: str, tmp_path: Path
) -> None:
    limited = policy()
    limited["tools"]["*_codegen_session"]["limits"] = [
        {"counter": "codegen", "window": "minute", "max": 2, "scope": "grant"}
    ]
    async with open_gateway(limited, agent_name) as agent:
        first = await agent.call_tool("get_codegen_session", {"sessionId": "nope"})
        second = await agent.call_tool("get_codegen_session", {"sessionId": "nope"})
        third = await agent.call_tool("get_codegen_session", {"sessionId": "nope"})
    assert "rate-limited" not in text_of(first) + text_of(second)
    assert third.is_error
    assert "rate-limited" in text_of(third) and "get_codegen_session" in text_of(third)


async def test_policy_edits_apply_while_running_and_a_broken_edit_keeps_the_last_good_one(
    open_gateway: Any, policy: Any, agent_name: str, service: ServiceProcess
) -> None:
    async def get_session(agent: Any) -> str:
        return text_of(await agent.call_tool("get_codegen_session", {"sessionId": "nope"}))

    async with open_gateway(policy(), agent_name) as agent:
        assert "Signoff denied" not in await get_session(agent)

        # The service's policy is the one to edit: the gateway follows it.
        frozen = policy()
        frozen["tools"]["get_codegen_session"] = {"action": "deny", "reason": "codegen frozen"}
        service.enforce(frozen)
        with anyio.fail_after(10):
            while "codegen frozen" not in await get_session(agent):
                await anyio.sleep(0.2)

        assert service.policy_path is not None
        service.policy_path.write_text('{"version": "1", "default": "allow", "tools": {')
        await anyio.sleep(3)
        assert "codegen frozen" in await get_session(agent)
