"""Approvers edit a call's arguments from Slack: the Edit button opens a modal (views.open on
the Slack stand-in), and its signed submission approves the edited call."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from slack_standin import SlackStandin
from slack_support import action_ids, block_action, card_text, form_body, settled, view_submission
from support import ServiceProcess

Click = Callable[..., httpx.Response]


def _edit_modal(standin: SlackStandin, click: Click, user: str, request: dict[str, Any]) -> Any:
    card = standin.wait_for(lambda: standin.card_for(request["id"]))
    assert "signoff_edit" in action_ids(card)
    assert click(block_action(user, card, "signoff_edit")).status_code == 200
    return standin.wait_for(
        lambda: (v := standin.view_for(request["id"])) and v["callback_id"] == "signoff_edit" and v
    )


def test_bob_edits_the_session_id_in_a_modal_and_approves(
    standin: SlackStandin,
    queue_call: Callable[..., dict[str, Any]],
    click: Click,
    alice: httpx.Client,
) -> None:
    request = queue_call(arguments={"sessionId": "prod-42"})
    view = _edit_modal(standin, click, "U0BOB", request)
    [field] = [b for b in view["blocks"] if b.get("block_id") == "edited_arguments"]
    assert json.loads(field["element"]["initial_value"]) == {"sessionId": "prod-42"}
    assert alice.get(f"/requests/{request['id']}").json()["status"] == "pending"

    answer = click(
        view_submission("U0BOB", view, '{"sessionId": "staging-42"}', block="edited_arguments")
    )
    assert answer.status_code == 200 and answer.content == b""
    decided = settled(alice, request["id"])
    assert decided["status"] == "approved" and decided["edited_by"] == "bob"
    assert decided["approved_arguments"] == {"sessionId": "staging-42"}
    assert decided["arguments"] == {"sessionId": "prod-42"}
    assert decided["channel"] == "slack"
    card = standin.wait_for(
        lambda: (c := standin.card_for(request["id"])) and "Approved by bob" in card_text(c) and c
    )
    assert "edited by bob" in card_text(card) and "staging-42" in card_text(card)


def test_invalid_json_keeps_the_modal_open_with_the_mistake(
    standin: SlackStandin,
    queue_call: Callable[..., dict[str, Any]],
    click: Click,
    alice: httpx.Client,
) -> None:
    request = queue_call()
    view = _edit_modal(standin, click, "U0ALICE", request)
    for bad, says in (('{"sessionId": ', "not valid JSON"), ("[1, 2]", "JSON object")):
        answer = click(view_submission("U0ALICE", view, bad, block="edited_arguments"))
        assert answer.status_code == 200
        body = answer.json()
        assert body["response_action"] == "errors"
        assert says in body["errors"]["edited_arguments"]
    time.sleep(0.3)
    assert alice.get(f"/requests/{request['id']}").json()["status"] == "pending"


def test_an_edit_from_someone_who_may_not_decide_changes_nothing(
    standin: SlackStandin,
    queue_call: Callable[..., dict[str, Any]],
    click: Click,
    alice: httpx.Client,
    service: ServiceProcess,
) -> None:
    request = queue_call()
    view = _edit_modal(standin, click, "U0ALICE", request)
    # Submissions for carol (not a QA lead), the agent itself, and a stranger.
    for user in ("U0CAROL", "U0AGENT7", "U0MALLORY"):
        answer = click(view_submission(user, view, '{"sessionId": "x"}', block="edited_arguments"))
        assert answer.status_code == 200
    # Unsigned: refused before anything is parsed.
    body = form_body(
        view_submission("U0ALICE", view, '{"sessionId": "y"}', block="edited_arguments")
    )
    unsigned = httpx.post(f"{service.url}/slack/interactions", content=body)
    assert unsigned.status_code == 401
    time.sleep(0.5)
    stored = alice.get(f"/requests/{request['id']}").json()
    assert stored["status"] == "pending" and stored["approved_arguments"] is None


def test_after_an_edit_voids_an_approval_every_later_vote_is_still_replied_in_the_thread(
    standin: SlackStandin,
    queue_call: Callable[..., dict[str, Any]],
    service: ServiceProcess,
    alice: httpx.Client,
) -> None:
    # Quorum 2: alice approves, bob edits (voiding alice's approval), alice approves again.
    request = queue_call(quorum=2, arguments={"sessionId": "prod-7"})
    card = standin.wait_for(lambda: standin.card_for(request["id"]))

    def thread(count: int) -> list[str]:
        return list(
            standin.wait_for(
                lambda: (
                    len(replies := standin.thread(card["channel"], card["ts"])) >= count
                    and [r["text"] for r in replies]
                )
            )
        )

    def vote(client: httpx.Client, **body: Any) -> dict[str, Any]:
        answer = client.post(
            f"/requests/{request['id']}/decisions", json={"decision": "approve", **body}
        )
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    assert vote(alice)["approvals"] == 1
    assert "alice approved via the API (1 of 2)" in thread(1)[0]
    bob = service.client(service.token("approver", "bob"))
    edited = vote(bob, arguments={"sessionId": "staging-7"})
    assert edited["status"] == "pending" and edited["approvals"] == 1
    after_edit = thread(3)
    assert "bob edited the arguments via the API" in after_edit[1]
    assert "approvals voided: alice" in after_edit[1]
    assert "bob approved via the API (1 of 2)" in after_edit[2]
    done = vote(alice, arguments_hash=edited["approved_arguments_hash"])
    assert done["status"] == "approved"
    final = thread(4)
    assert "alice approved via the API (2 of 2)" in final[3]
    time.sleep(0.5)  # nothing more, and nothing twice
    assert len(standin.thread(card["channel"], card["ts"])) == 4
