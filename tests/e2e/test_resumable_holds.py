"""A held call of a 2026-07-28 agent comes back as rounds the SDK client follows by itself.

The agent is the official SDK `Client` (it negotiates 2026-07-28 with the
gateway by default); the upstream is the real server-everything over stdio.
Where a story needs to hold a round's `requestState` in its hands, it drives
the rounds itself (`client.session.call_tool(..., allow_input_required=True)`).
"""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import ClientSession
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError
from modern_agents import (
    Person,
    decide_when_pending,
    events_of,
    gateway_command,
    held_echo,
    modern_agent,
)
from support import pending_request, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def token(service: Any) -> str:
    return str(service.token("gateway", "gw-rounds"))


async def test_an_approval_given_while_the_sdk_client_retries_completes_the_original_call(
    service: Any, token: str, alice: Any, auditor: Any, everything_command: list[str],
    agent_name: str,
) -> None:  # fmt: skip
    service.enforce(held_echo("1s"))
    person = Person("accept")
    decided: list[str] = []

    async def approve() -> None:
        # Three holds of 1 s go by first: the client is several rounds in.
        decided.append(await decide_when_pending(alice, agent_name, "echo", "approve", after=3.5))

    async with (
        modern_agent(service, token, agent_name, everything_command, elicit=person) as agent,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(approve)
        result = await agent.call_tool("echo", {"message": "ship it"})
    assert not result.is_error and text_of(result) == "Echo: ship it"
    request_id = decided[0]
    # The first round asked the person to open the request's page, once, whatever the rounds.
    assert len(person.asked) == 1
    page = person.asked[0]
    assert isinstance(page, types.ElicitRequestURLParams)
    assert page.url == f"{service.url}/requests/{request_id}"
    assert request_id in page.message
    # It ran once, on the approval.
    forwarded = await events_of(auditor, request_id, "call.forwarded")
    assert len(forwarded) == 1


async def test_a_rejection_comes_back_as_a_tool_error_with_the_comment(
    service: Any, token: str, alice: Any, everything_command: list[str], agent_name: str
) -> None:
    service.enforce(held_echo("1s"))
    async with (
        modern_agent(service, token, agent_name, everything_command) as agent,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(
            lambda: decide_when_pending(
                alice, agent_name, "echo", "reject", after=1.5, comment="not on a Friday"
            )
        )
        result = await agent.call_tool("echo", {"message": "ship it"})
    assert result.is_error
    assert "rejected by alice" in text_of(result) and "not on a Friday" in text_of(result)


async def test_an_expired_request_comes_back_as_a_tool_error(
    service: Any, token: str, everything_command: list[str], agent_name: str
) -> None:
    service.enforce(held_echo("1s", timeout="2s"))
    async with modern_agent(service, token, agent_name, everything_command) as agent:
        result = await agent.call_tool("echo", {"message": "ship it"})
    assert result.is_error and "expired without a decision" in text_of(result)


async def round_of(agent: Any, arguments: dict[str, Any], state: str | None) -> Any:
    return await agent.session.call_tool(
        "echo", arguments, request_state=state, allow_input_required=True
    )


async def refused(agent: Any, arguments: dict[str, Any], state: str) -> MCPError:
    with pytest.raises(MCPError) as caught:
        await round_of(agent, arguments, state)
    return caught.value


async def test_forged_replayed_and_foreign_states_are_invalid_params_and_nothing_runs(
    service: Any, token: str, alice: Any, auditor: Any, everything_command: list[str],
    agent_name: str,
) -> None:  # fmt: skip
    service.enforce(held_echo("1s"))
    call = {"message": "ship it"}
    async with modern_agent(service, token, agent_name, everything_command) as agent:
        first = await round_of(agent, call, None)
        assert isinstance(first, types.InputRequiredResult) and first.request_state
        state = first.request_state
        request = await pending_request(alice, agent_name, "echo")

        # Altered by one character, or made up: not a state this gateway issued.
        # (Not the last character: its low bits are base64 padding, so changing "A" to
        # "B" there can decode to the very same signature.)
        altered = state[:5] + ("A" if state[5] != "A" else "B") + state[6:]
        assert (await refused(agent, call, altered)).error.code == types.INVALID_PARAMS
        for made_up in ("made-up", "x" * 10_000, state.split(".")[0]):
            assert (await refused(agent, call, made_up)).error.code == types.INVALID_PARAMS
        # Another call's arguments with this call's state.
        other = await refused(agent, {"message": "something else"}, state)
        assert other.error.code == types.INVALID_PARAMS

        # Used once: the next round (still pending) hands out a new state...
        second = await round_of(agent, call, state)
        assert isinstance(second, types.InputRequiredResult)
        assert second.request_state and second.request_state != state
        # ...and the spent one is refused, now and after the approval.
        assert (await refused(agent, call, state)).error.code == types.INVALID_PARAMS
        answer = alice.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
        assert answer.status_code == 200
        assert (await refused(agent, call, state)).error.code == types.INVALID_PARAMS
        assert await events_of(auditor, request["id"], "call.forwarded") == []

        done = await round_of(agent, call, second.request_state)
        assert isinstance(done, types.CallToolResult) and text_of(done) == "Echo: ship it"
        # The state that ran the call cannot run it again.
        assert (await refused(agent, call, second.request_state)).error.code == types.INVALID_PARAMS
    assert len(await events_of(auditor, request["id"], "call.forwarded")) == 1


async def test_another_callers_state_is_invalid_params(
    service: Any, token: str, alice: Any, auditor: Any, everything_command: list[str],
    agent_name: str,
) -> None:  # fmt: skip
    # Two agents behind gateways that share a token (and so the sealing key).
    service.enforce(held_echo("1s"))
    call = {"message": "ship it"}
    async with (
        modern_agent(service, token, agent_name, everything_command) as mallory,
        modern_agent(service, token, f"{agent_name}-other", everything_command) as victim,
    ):
        first = await round_of(victim, call, None)
        assert isinstance(first, types.InputRequiredResult) and first.request_state
        request = await pending_request(alice, f"{agent_name}-other", "echo")
        alice.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
        stolen = await refused(mallory, call, first.request_state)
        assert stolen.error.code == types.INVALID_PARAMS
        assert await events_of(auditor, request["id"], "call.forwarded") == []
        # The victim's own retry still runs it.
        done = await round_of(victim, call, first.request_state)
        assert isinstance(done, types.CallToolResult) and not done.is_error


async def test_an_older_protocol_client_keeps_hold_then_hand_back(
    service: Any, token: str, everything_command: list[str], agent_name: str
) -> None:
    service.enforce(held_echo("1s"))
    params = gateway_command(service.url, token, agent_name, everything_command)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        result = await session.call_tool("echo", {"message": "ship it"})
    assert result.is_error
    assert "pending approval" in text_of(result) and "Retry this identical call" in text_of(result)


async def test_an_edited_approval_runs_what_alice_approved_and_the_retry_cannot_choose(
    service: Any, token: str, alice: Any, auditor: Any, everything_command: list[str],
    agent_name: str,
) -> None:  # fmt: skip
    service.enforce(held_echo("1s"))
    call = {"message": "drop the database"}
    async with modern_agent(service, token, agent_name, everything_command) as agent:
        first = await round_of(agent, call, None)
        assert isinstance(first, types.InputRequiredResult) and first.request_state
        request = await pending_request(alice, agent_name, "echo")
        body = {"decision": "approve", "arguments": {"message": "say hello"}}
        edited = alice.post(f"/requests/{request['id']}/decisions", json=body)
        assert edited.status_code == 200, edited.text

        # The agent cannot bring arguments of its own choosing with the state, not even
        # the approved ones: the state is bound to the call as it was held.
        forged = await refused(agent, {"message": "say hello"}, first.request_state)
        assert forged.error.code == types.INVALID_PARAMS
        assert await events_of(auditor, request["id"], "call.forwarded") == []

        done = await round_of(agent, call, first.request_state)
    assert isinstance(done, types.CallToolResult) and not done.is_error
    text = text_of(done)
    assert text.startswith("Echo: say hello") and "Echo: drop the database" not in text
    assert "alice changed the arguments before approving (changed: message)" in text
    meta = (done.meta or {})["signoff"]
    assert meta["approved_arguments"] == {"message": "say hello"}
    assert meta["arguments"] == call and meta["edited_by"] == "alice"
    assert len(await events_of(auditor, request["id"], "call.forwarded")) == 1
