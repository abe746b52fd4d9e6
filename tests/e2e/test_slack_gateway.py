"""An agent's call held by the real gateway is approved from Slack.

The real `signoff gateway` fronts the real Playwright MCP server; the service
posts the card to the Slack stand-in, and a click signed as Slack signs it
resumes the held MCP call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from slack_standin import SlackStandin
from slack_support import (
    CHANNEL,
    SERVICE_POLICY,
    action_ids,
    block_action,
    card_text,
    form_body,
    signed_headers,
    slack_env,
    write_service_policy,
)
from support import (
    ServiceProcess,
    calling,
    dashboard_sign_in,
    pending_request,
    start_codegen,
    text_of,
)

pytestmark = pytest.mark.anyio

END = "end_codegen_session"


@pytest.fixture(scope="module")
def standin() -> Iterator[SlackStandin]:
    server = SlackStandin().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, standin: SlackStandin
) -> Iterator[ServiceProcess]:
    """The service with Slack on (overrides the plain one for this module)."""
    policy = write_service_policy(tmp_path_factory.mktemp("slack-e2e-policy"))
    proc = ServiceProcess(
        tmp_path_factory.mktemp("slack-e2e") / "signoff.db", env=slack_env(standin, policy)
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def policy(policy: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """The README policy, plus who is who on Slack: the service enforces it, cards and all."""
    readme_policy = policy

    def slack_policy(**end_codegen: Any) -> dict[str, Any]:
        rules = readme_policy(**end_codegen)
        rules["approvers"] = SERVICE_POLICY["approvers"]
        rules["approver_groups"] = {
            "qa-leads": {"members": ["alice", "bob"], "slack_channel": CHANNEL}
        }
        return rules

    return slack_policy


def click(service: ServiceProcess, payload: dict[str, Any]) -> httpx.Response:
    body = form_body(payload)
    return httpx.post(
        f"{service.url}/slack/interactions", content=body, headers=signed_headers(body)
    )


async def wait_card(standin: SlackStandin, request_id: str) -> dict[str, Any]:
    with anyio.fail_after(15):
        while (card := standin.card_for(request_id)) is None:
            await anyio.sleep(0.05)
    return card


async def test_a_signed_approve_click_resumes_the_held_call_and_updates_the_card(
    open_gateway: Any,
    policy: Any,
    agent_name: str,
    alice: httpx.Client,
    service: ServiceProcess,
    standin: SlackStandin,
    tmp_path: Path,
) -> None:
    out_dir = tmp_path / "generated"
    async with open_gateway(policy(), agent_name) as agent:
        session_id = await start_codegen(agent, out_dir)
        async with calling(agent, END, {"sessionId": session_id}) as results:
            request = await pending_request(alice, agent_name, END)
            card = await wait_card(standin, request["id"])
            assert card["channel"] == CHANNEL
            assert agent_name in card_text(card) and "<@U0ALICE> <@U0BOB>" in card["text"]

            # A forged click changes nothing; the held call stays held.
            body = form_body(block_action("U0ALICE", card, "signoff_approve"))
            forged = httpx.post(
                f"{service.url}/slack/interactions",
                content=body,
                headers=signed_headers(body, secret="guessed"),
            )
            assert forged.status_code == 401
            await anyio.sleep(0.3)
            assert results == []

            started = time.monotonic()
            assert (
                click(service, block_action("U0ALICE", card, "signoff_approve")).status_code == 200
            )
            with anyio.fail_after(20):
                while not results:
                    await anyio.sleep(0.02)
            resumed_after = time.monotonic() - started

    [result] = results
    assert not result.is_error, text_of(result)
    assert "Generated test file" in text_of(result)
    assert resumed_after < 10
    stored = alice.get(f"/requests/{request['id']}").json()
    assert stored["status"] == "approved" and stored["decided_by"] == "alice"
    assert stored["channel"] == "slack"
    updated = await wait_updated(standin, request["id"], "Approved by alice")
    assert "via Slack" in card_text(updated) and action_ids(updated) == ["signoff_open"]


async def wait_updated(standin: SlackStandin, request_id: str, words: str) -> dict[str, Any]:
    with anyio.fail_after(15):
        while True:
            card = standin.card_for(request_id)
            if card is not None and words in card_text(card):
                return card
            await anyio.sleep(0.05)


async def test_a_non_member_is_refused_in_slack_and_a_dashboard_decision_updates_the_card(
    open_gateway: Any,
    policy: Any,
    agent_name: str,
    alice: httpx.Client,
    service: ServiceProcess,
    standin: SlackStandin,
    tmp_path: Path,
) -> None:
    async with open_gateway(policy(), agent_name) as agent:
        session_id = await start_codegen(agent, tmp_path / "generated")
        async with calling(agent, END, {"sessionId": session_id}) as results:
            request = await pending_request(alice, agent_name, END)
            card = await wait_card(standin, request["id"])

            since = time.monotonic()
            assert (
                click(service, block_action("U0CAROL", card, "signoff_approve")).status_code == 200
            )
            with anyio.fail_after(10):
                while not [
                    c
                    for c in standin.calls_of("chat.postEphemeral")
                    if c.at >= since and c.params["user"] == "U0CAROL"
                ]:
                    await anyio.sleep(0.05)
            [told] = [
                c.params["text"]
                for c in standin.calls_of("chat.postEphemeral")
                if c.at >= since and c.params["user"] == "U0CAROL"
            ]
            assert "carol is not a member of qa-leads" in told
            assert results == []
            assert alice.get(f"/requests/{request['id']}").json()["status"] == "pending"

            person = dashboard_sign_in(service, service.token("approver", "bob"))
            done = person.http.post(
                f"/requests/{request['id']}/decide",
                data={"decision": "reject", "comment": "use e2e/", "csrf_token": person.csrf},
                headers={"Accept": "application/json"},
            )
            assert done.status_code == 200, done.text

    [result] = results
    assert result.is_error and "use e2e/" in text_of(result)
    updated = await wait_updated(standin, request["id"], "Rejected by bob")
    assert "via the dashboard" in card_text(updated) and "use e2e/" in card_text(updated)
    [reply] = standin.thread(CHANNEL, card["ts"])
    assert reply["text"] == ":x: bob rejected via the dashboard: use e2e/"
