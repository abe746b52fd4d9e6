"""Approvers click the card's buttons; Slack POSTs signed payloads to /slack/interactions.

Payloads are built as Slack sends them (form-encoded `payload=` JSON) and signed
with the app's signing secret; the service answers over real HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from slack_standin import SlackStandin
from slack_support import (
    CHANNEL,
    action_ids,
    block_action,
    card_text,
    form_body,
    settled,
    signed_headers,
    view_submission,
)
from support import ServiceProcess

Click = Callable[..., httpx.Response]


def pending_card(standin: SlackStandin, request: dict[str, Any]) -> dict[str, Any]:
    return dict(standin.wait_for(lambda: standin.card_for(request["id"])))


def ephemeral_to(standin: SlackStandin, user: str, since: float) -> list[str]:
    return [
        c.params["text"]
        for c in standin.calls_of("chat.postEphemeral")
        if c.params.get("user") == user and c.at >= since
    ]


def test_approve_click_decides_as_the_mapped_approver_and_updates_the_card(
    standin: SlackStandin,
    queue_call: Callable[..., dict[str, Any]],
    click: Click,
    alice: httpx.Client,
) -> None:
    request = queue_call()
    card = pending_card(standin, request)
    started = time.monotonic()
    answer = click(block_action("U0ALICE", card, "signoff_approve"))
    assert answer.status_code == 200 and answer.content == b""
    assert time.monotonic() - started < 1.0  # acknowledged at once; the work follows

    decided = settled(alice, request["id"])
    assert decided["status"] == "approved" and decided["decided_by"] == "alice"
    assert decided["channel"] == "slack"
    updated = standin.wait_for(
        lambda: (c := standin.card_for(request["id"])) and "Approved by alice" in card_text(c) and c
    )
    assert "via Slack" in card_text(updated) and action_ids(updated) == ["signoff_open"]
    [reply] = standin.wait_for(lambda: standin.thread(CHANNEL, card["ts"]))
    assert reply["text"].startswith(":white_check_mark: alice approved via Slack")


def test_reject_opens_a_modal_and_its_submission_rejects_with_the_reason(
    standin: SlackStandin,
    queue_call: Callable[..., dict[str, Any]],
    click: Click,
    alice: httpx.Client,
) -> None:
    request = queue_call()
    card = pending_card(standin, request)
    action = block_action("U0BOB", card, "signoff_reject")
    assert click(action).status_code == 200

    view = standin.wait_for(lambda: standin.view_for(request["id"]))
    [call] = [c for c in standin.calls_of("views.open") if request["id"] in str(c.params)]
    assert call.params["trigger_id"] == action["trigger_id"]
    assert view["type"] == "modal" and view["callback_id"] == "signoff_reject"
    assert [b.get("block_id") for b in view["blocks"]][-1] == "reason"
    assert alice.get(f"/requests/{request['id']}").json()["status"] == "pending"

    # Slack sends the view it holds (with its id and hash) back in the submission.
    submitted = click(view_submission("U0BOB", view, "write it under e2e/ instead"))
    assert submitted.status_code == 200 and submitted.content == b""

    decided = settled(alice, request["id"])
    assert decided["status"] == "rejected" and decided["decided_by"] == "bob"
    assert decided["comment"] == "write it under e2e/ instead" and decided["channel"] == "slack"
    updated = standin.wait_for(
        lambda: (c := standin.card_for(request["id"])) and "Rejected by bob" in card_text(c) and c
    )
    assert "write it under e2e/ instead" in card_text(updated)


@pytest.mark.parametrize(
    ("user", "why"),
    [
        ("U0CAROL", "carol is not a member of qa-leads"),
        ("U0AGENT7", "agent-7 made this call and cannot approve it"),
        ("U0MALLORY", "Signoff does not know your Slack account"),
    ],
)
def test_who_may_not_decide_gets_an_ephemeral_message_and_nothing_changes(
    standin: SlackStandin,
    queue_call: Callable[..., dict[str, Any]],
    click: Click,
    alice: httpx.Client,
    user: str,
    why: str,
) -> None:
    request = queue_call()
    card = pending_card(standin, request)
    since = time.monotonic()
    assert click(block_action(user, card, "signoff_approve")).status_code == 200
    assert click(block_action(user, card, "signoff_reject")).status_code == 200

    told = standin.wait_for(lambda: len(ephemeral_to(standin, user, since)) >= 2)
    assert told
    texts = ephemeral_to(standin, user, since)
    assert all(why in text and "Nothing changed" in text for text in texts), texts
    [call] = [c for c in standin.calls_of("chat.postEphemeral") if c.at >= since][:1]
    assert call.params["channel"] == CHANNEL
    assert not [c for c in standin.calls_of("views.open") if request["id"] in str(c.params)]
    stored = alice.get(f"/requests/{request['id']}").json()
    assert stored["status"] == "pending" and stored["decisions"] == []


def test_quorum_of_two_clicks_shows_progress_then_approves(
    standin: SlackStandin,
    queue_call: Callable[..., dict[str, Any]],
    click: Click,
    alice: httpx.Client,
) -> None:
    request = queue_call(quorum=2)
    card = pending_card(standin, request)
    click(block_action("U0ALICE", card, "signoff_approve"))
    partial = standin.wait_for(
        lambda: (c := standin.card_for(request["id"])) and "1 of 2" in card_text(c) and c
    )
    assert action_ids(partial)[:2] == ["signoff_approve", "signoff_reject"]

    # Alice clicking again is a second vote by the same person: refused, privately.
    since = time.monotonic()
    click(block_action("U0ALICE", partial, "signoff_approve"))
    [told] = standin.wait_for(lambda: ephemeral_to(standin, "U0ALICE", since))
    assert "already voted" in told

    click(block_action("U0BOB", partial, "signoff_approve"))
    decided = settled(alice, request["id"])
    assert decided["status"] == "approved" and decided["approvals"] == 2


def test_a_click_on_an_already_decided_request_says_so(
    standin: SlackStandin,
    queue_call: Callable[..., dict[str, Any]],
    click: Click,
    alice: httpx.Client,
) -> None:
    request = queue_call()
    card = pending_card(standin, request)  # the card as it was, with its buttons
    alice.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
    since = time.monotonic()
    click(block_action("U0BOB", card, "signoff_approve"))
    [told] = standin.wait_for(lambda: ephemeral_to(standin, "U0BOB", since))
    assert "already approved by alice" in told
    assert alice.get(f"/requests/{request['id']}").json()["decisions"][0]["approver"] == "alice"


def _approve_body(standin: SlackStandin, card: dict[str, Any]) -> bytes:
    return form_body(block_action("U0ALICE", card, "signoff_approve"))


def test_forged_stale_replayed_or_unsigned_requests_get_401_and_change_nothing(
    standin: SlackStandin,
    service: ServiceProcess,
    queue_call: Callable[..., dict[str, Any]],
    alice: httpx.Client,
) -> None:
    request = queue_call(quorum=2)
    card = pending_card(standin, request)
    url = f"{service.url}/slack/interactions"
    body = _approve_body(standin, card)
    now = int(time.time())

    refused = {
        "forged": signed_headers(body, secret="not-the-signing-secret"),
        "stale": signed_headers(body, timestamp=now - 6 * 60),
        "future": signed_headers(body, timestamp=now + 6 * 60),
        "unsigned": {"Content-Type": "application/x-www-form-urlencoded"},
    }
    tampered_headers = signed_headers(body)
    for name, headers in refused.items():
        answer = httpx.post(url, content=body, headers=headers)
        assert answer.status_code == 401, name
        assert answer.json()["error"]["code"] == "invalid_signature", name
    # A body changed after signing.
    tampered = body.replace(b"U0ALICE", b"U0BOB")
    assert httpx.post(url, content=tampered, headers=tampered_headers).status_code == 401

    time.sleep(0.5)
    stored = alice.get(f"/requests/{request['id']}").json()
    assert stored["status"] == "pending" and stored["decisions"] == []

    # The genuine request counts once; the same request again is a replay.
    genuine = signed_headers(body)
    assert httpx.post(url, content=body, headers=genuine).status_code == 200
    replay = httpx.post(url, content=body, headers=genuine)
    assert replay.status_code == 401 and "replayed" in replay.json()["error"]["message"]
    standin.wait_for(lambda: alice.get(f"/requests/{request['id']}").json()["approvals"] == 1)
    time.sleep(0.3)
    stored = alice.get(f"/requests/{request['id']}").json()
    assert stored["approvals"] == 1 and [d["approver"] for d in stored["decisions"]] == ["alice"]


def test_a_signed_request_without_a_payload_is_a_400(service: ServiceProcess) -> None:
    body = b"nothing=here"
    answer = httpx.post(
        f"{service.url}/slack/interactions", content=body, headers=signed_headers(body)
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_payload"
