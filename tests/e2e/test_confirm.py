"""Policy action `confirm`: the person at the client confirms the call through elicitation.

The upstream is `fake_upstream.py`, whose `calls_seen` tool answers with every
tool called on it: a call the person declined never shows up there. The
agents are the official SDK client, at 2026-07-28 (`Client`, rounds) and at the
handshake era (`ClientSession`, a classic `elicitation/create`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import ClientSession
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError
from modern_agents import Person, gateway_command, modern_agent
from support import ROOT, pending_request, text_of

from gateway_plugin.policy import canonical_arguments_hash

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

UPSTREAM = [sys.executable, str(ROOT / "tests" / "gateway_plugin" / "fake_upstream.py")]


def confirm_policy(**entry: Any) -> dict[str, Any]:
    """`ids_seen` needs the person's confirmation (unless it is a dry run); `calls_seen` is free."""
    rule = {"action": "confirm", "message": "Let the agent list what it sent?"}
    rule.update(entry)
    return {
        "version": "1",
        "default": "deny",
        "tools": {
            "calls_seen": {"action": "allow"},
            "params_seen": {"action": "allow"},
            "ids_seen": {
                "redact": ["note"],
                "rules": [{"if": {"dry_run": {"eq": True}}, "action": "allow"}, rule],
            },
        },
    }


@pytest.fixture(scope="module")
def token(service: Any) -> str:
    return str(service.token("gateway", "gw-confirm"))


async def calls_seen(agent: Any) -> int:
    """How many times the upstream ran `ids_seen` so far."""
    probe = await agent.call_tool("calls_seen", {})
    assert not probe.is_error, text_of(probe)
    return list(json.loads(text_of(probe))).count("ids_seen")


async def confirmations_of(auditor: Any, agent: str, count: int) -> list[dict[str, Any]]:
    """The agent's call.confirmed / call.declined events, once `count` have arrived."""
    with anyio.fail_after(15):
        while True:
            events = auditor.get("/audit/export", params={"format": "json"}).json()
            mine = [
                e
                for e in events
                if e["caller"] == agent and e["type"] in ("call.confirmed", "call.declined")
            ]
            if len(mine) >= count:
                return mine
            await anyio.sleep(0.1)


ARGS = {"note": "s3cr3t-note", "target": "prod"}


async def test_a_modern_client_confirms_in_a_form_that_names_the_tool_and_masks_arguments(
    service: Any, token: str, auditor: Any, agent_name: str
) -> None:
    service.enforce(confirm_policy())
    person = Person("accept")
    async with modern_agent(service, token, agent_name, UPSTREAM, elicit=person) as agent:
        before = await calls_seen(agent)
        result = await agent.call_tool("ids_seen", ARGS)
        assert not result.is_error, text_of(result)
        assert await calls_seen(agent) == before + 1
    [form] = person.asked
    assert isinstance(form, types.ElicitRequestFormParams)
    assert "Let the agent list what it sent?" in form.message and "ids_seen" in form.message
    assert "prod" in form.message and "s3cr3t-note" not in form.message
    [event] = await confirmations_of(auditor, agent_name, 1)
    assert event["type"] == "call.confirmed" and event["outcome"] == "confirmed"
    assert event["tool"] == "ids_seen" and event["caller"] == agent_name
    assert event["arguments_hash"] == canonical_arguments_hash(ARGS)
    assert event["arguments"]["note"] != "s3cr3t-note"
    # A tier of its own: no approval request, no vote.
    assert event["request_id"] is None


@pytest.mark.parametrize("answer", ["decline", "cancel"])
async def test_a_declined_confirmation_refuses_the_call_and_nothing_reaches_the_upstream(
    service: Any, token: str, auditor: Any, agent_name: str, answer: str
) -> None:
    service.enforce(confirm_policy())
    async with modern_agent(service, token, agent_name, UPSTREAM, elicit=Person(answer)) as agent:
        before = await calls_seen(agent)
        result = await agent.call_tool("ids_seen", ARGS)
        assert result.is_error and "declined the call to ids_seen" in text_of(result)
        assert await calls_seen(agent) == before
    [event] = await confirmations_of(auditor, agent_name, 1)
    assert event["type"] == "call.declined" and event["outcome"] == "declined"
    assert event["arguments_hash"] == canonical_arguments_hash(ARGS)


async def test_an_older_client_is_asked_with_a_classic_elicitation(
    service: Any, token: str, agent_name: str
) -> None:
    service.enforce(confirm_policy())
    person = Person("accept")
    params = gateway_command(service.url, token, agent_name, UPSTREAM)
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write, elicitation_callback=person) as session,
    ):
        await session.initialize()
        assert session.protocol_version != "2026-07-28"
        before = await calls_seen(session)
        result = await session.call_tool("ids_seen", ARGS)
        assert not result.is_error, text_of(result)
        assert await calls_seen(session) == before + 1
    [form] = person.asked
    assert isinstance(form, types.ElicitRequestFormParams) and "ids_seen" in form.message


async def test_a_forged_acceptance_without_the_gateways_state_runs_nothing(
    service: Any, token: str, agent_name: str
) -> None:
    service.enforce(confirm_policy())
    accept = {"signoff-confirm": types.ElicitResult(action="accept")}
    async with modern_agent(service, token, agent_name, UPSTREAM, elicit=Person()) as agent:
        before = await calls_seen(agent)
        # An answer nobody asked for: the gateway asks (again) and runs nothing.
        asked = await agent.session.call_tool(
            "ids_seen", ARGS, input_responses=accept, allow_input_required=True
        )
        assert isinstance(asked, types.InputRequiredResult) and asked.request_state
        # The state of this call, brought back with another call's arguments or altered.
        for arguments, state in [
            ({**ARGS, "target": "staging"}, asked.request_state),
            (ARGS, asked.request_state[:-2] + "xx"),
        ]:
            with pytest.raises(MCPError) as caught:
                await agent.session.call_tool(
                    "ids_seen", arguments, input_responses=accept, request_state=state,
                    allow_input_required=True,
                )  # fmt: skip
            assert caught.value.error.code == types.INVALID_PARAMS
        assert await calls_seen(agent) == before
        # The genuine round runs it once; its state is then spent.
        done = await agent.session.call_tool(
            "ids_seen", ARGS, input_responses=accept, request_state=asked.request_state,
            allow_input_required=True,
        )  # fmt: skip
        assert isinstance(done, types.CallToolResult) and not done.is_error
        # The rounds are between the agent and the gateway: the upstream never sees them.
        seen = json.loads(text_of(await agent.call_tool("params_seen", {})))
        assert seen[-2] == ["arguments", "name"]
        with pytest.raises(MCPError):
            await agent.session.call_tool(
                "ids_seen", ARGS, input_responses=accept, request_state=asked.request_state,
                allow_input_required=True,
            )  # fmt: skip
        assert await calls_seen(agent) == before + 1


@asynccontextmanager
async def plain_agent(service: Any, token: str, agent: str) -> AsyncIterator[Any]:
    """A 2026-07-28 client that declares no elicitation."""
    async with modern_agent(service, token, agent, UPSTREAM) as client:
        yield client


async def test_a_client_that_cannot_be_asked_gets_a_clear_error_without_approvers(
    service: Any, token: str, agent_name: str
) -> None:
    service.enforce(confirm_policy())
    async with plain_agent(service, token, agent_name) as agent:
        before = await calls_seen(agent)
        result = await agent.call_tool("ids_seen", ARGS)
        assert result.is_error and "cannot ask them" in text_of(result)
        assert await calls_seen(agent) == before


async def test_a_client_that_cannot_be_asked_falls_back_to_the_rules_approvers(
    service: Any, token: str, agent_name: str
) -> None:
    service.enforce(confirm_policy(approvers=["alice"], hold="1s"))
    alice = service.client(service.token("approver", "alice"))
    async with plain_agent(service, token, agent_name) as agent:
        before = await calls_seen(agent)
        first = await agent.session.call_tool("ids_seen", ARGS, allow_input_required=True)
        # Held for the approvers: a request in their queue, the rounds of a held call.
        assert isinstance(first, types.InputRequiredResult) and first.request_state
        request = await pending_request(alice, agent_name, "ids_seen")
        assert request["approvers"] == ["alice"]
        answer = alice.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
        assert answer.status_code == 200
        done = await agent.session.call_tool(
            "ids_seen", ARGS, request_state=first.request_state, allow_input_required=True
        )
        assert isinstance(done, types.CallToolResult) and not done.is_error
        assert await calls_seen(agent) == before + 1
