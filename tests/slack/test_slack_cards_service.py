"""The approver group's channel gets a card for every held call, and the card tells the truth.

The service runs as `signoff serve` with Slack configured and talks to the
Slack stand-in over HTTP through slack-sdk's real client.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
from slack_standin import BOT_TOKEN, SlackStandin
from slack_support import CHANNEL, action_ids
from slack_support import card_text as block_text
from support import ServiceProcess, dashboard_sign_in


def test_a_held_call_posts_a_card_to_the_groups_channel(
    standin: SlackStandin,
    service: ServiceProcess,
    queue_call: Callable[..., dict[str, Any]],
    alice: httpx.Client,
) -> None:
    request = queue_call(arguments={"sessionId": "s-card", "outputPath": "/tmp/secret-plan.ts"})
    card = standin.wait_for(lambda: standin.card_for(request["id"]))

    [post] = [
        c for c in standin.calls_of("chat.postMessage") if request["id"] in json.dumps(c.params)
    ]
    assert post.token == BOT_TOKEN
    assert card["channel"] == CHANNEL
    # Mentions the group's members by their Slack ids, in the notification text too.
    assert "<@U0ALICE>" in card["text"] and "<@U0BOB>" in card["text"]
    text = block_text(card)
    assert "end_codegen_session" in text and "playwright" in text and "agent-7" in text
    assert "writes a generated test file to disk" in text
    assert "<@U0ALICE> <@U0BOB>" in text
    assert "U0AGENT7" not in card["text"] + text  # the caller is not asked to approve itself
    assert "0 of 1" in text
    assert "<!date^" in text  # the expiry, in each reader's time zone
    assert f"http://signoff.test/requests/{request['id']}" in text
    # The policy's `redact` keys are masked on the card.
    assert "s-card" in text and "secret-plan" not in text and '\\"outputPath\\": \\"***\\"' in text
    assert action_ids(card) == ["signoff_approve", "signoff_reject", "signoff_edit", "signoff_open"]

    # The audit log records that approvers were notified.
    auditor = service.client(service.token("auditor", "audrey-slack"))

    def notified() -> list[dict[str, Any]]:
        rows = auditor.get(
            "/audit/export", params={"format": "json", "type": "request.notified"}
        ).json()
        return [row for row in rows if row["request_id"] == request["id"]]

    [event] = standin.wait_for(notified)
    assert event["channel"] == "slack" and event["actor"] == "system"
    assert CHANNEL in event["comment"] and "<@U0ALICE>" in event["comment"]


def test_a_decision_over_the_api_updates_the_card_and_replies_in_its_thread(
    standin: SlackStandin,
    queue_call: Callable[..., dict[str, Any]],
    alice: httpx.Client,
) -> None:
    request = queue_call()
    card = standin.wait_for(lambda: standin.card_for(request["id"]))
    decided = alice.post(
        f"/requests/{request['id']}/decisions",
        json={"decision": "approve", "comment": "looks fine"},
    )
    assert decided.status_code == 200, decided.text

    updated = standin.wait_for(
        lambda: (c := standin.card_for(request["id"])) and "edited" in c and c
    )
    assert updated["ts"] == card["ts"]
    assert action_ids(updated) == ["signoff_open"]  # Approve and Reject are gone
    text = block_text(updated)
    assert "Approved by alice" in text and "via the API" in text and "looks fine" in text
    assert "1 of 1" in text
    [reply] = standin.wait_for(lambda: standin.thread(CHANNEL, card["ts"]))
    assert "alice approved via the API" in reply["text"] and "looks fine" in reply["text"]


def test_quorum_progress_shows_on_the_card_and_the_dashboard_decision_updates_it(
    standin: SlackStandin,
    service: ServiceProcess,
    queue_call: Callable[..., dict[str, Any]],
    alice: httpx.Client,
) -> None:
    request = queue_call(quorum=2)
    card = standin.wait_for(lambda: standin.card_for(request["id"]))
    assert "0 of 2" in block_text(card)
    alice.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
    partial = standin.wait_for(
        lambda: (c := standin.card_for(request["id"])) and "1 of 2" in block_text(c) and c
    )
    assert "alice" in block_text(partial)
    assert action_ids(partial)[:2] == ["signoff_approve", "signoff_reject"]  # still open

    # Bob rejects on the dashboard, with a comment.
    bob = dashboard_sign_in(service, service.token("approver", "bob"))
    done = bob.http.post(
        f"/requests/{request['id']}/decide",
        data={"decision": "reject", "comment": "not on Fridays", "csrf_token": bob.csrf},
        headers={"Accept": "application/json"},
    )
    assert done.status_code in (200, 303), done.text
    final = standin.wait_for(
        lambda: (c := standin.card_for(request["id"])) and "Rejected by bob" in block_text(c) and c
    )
    assert "via the dashboard" in block_text(final) and "not on Fridays" in block_text(final)
    assert action_ids(final) == ["signoff_open"]
    replies = standin.wait_for(
        lambda: (
            len(standin.thread(CHANNEL, card["ts"])) >= 2 and standin.thread(CHANNEL, card["ts"])
        )
    )
    assert "alice approved via the API (1 of 2)" in replies[0]["text"]
    assert "bob rejected via the dashboard: not on Fridays" in replies[1]["text"]


def test_expiry_and_cancel_update_the_card(
    standin: SlackStandin,
    queue_call: Callable[..., dict[str, Any]],
    gateway: httpx.Client,
) -> None:
    expiring = queue_call(timeout_seconds=1)
    cancelled = queue_call()
    standin.wait_for(lambda: standin.card_for(cancelled["id"]))
    assert gateway.post(f"/requests/{cancelled['id']}/cancel").status_code == 200

    expired_card = standin.wait_for(
        lambda: (c := standin.card_for(expiring["id"])) and "Expired" in block_text(c) and c
    )
    assert action_ids(expired_card) == ["signoff_open"]
    cancelled_card = standin.wait_for(
        lambda: (c := standin.card_for(cancelled["id"])) and "Cancelled by" in block_text(c) and c
    )
    assert action_ids(cancelled_card) == ["signoff_open"]
    [reply] = standin.wait_for(lambda: standin.thread(CHANNEL, cancelled_card["ts"]))
    assert "Cancelled" in reply["text"]


def test_a_429_is_retried_after_retry_after(
    standin: SlackStandin, queue_call: Callable[..., dict[str, Any]]
) -> None:
    standin.fail_next(
        "chat.postMessage", status=429, retry_after=1, when=lambda p: "s-429" in json.dumps(p)
    )
    started = time.monotonic()
    request = queue_call(arguments={"sessionId": "s-429"})
    standin.wait_for(lambda: standin.card_for(request["id"]))
    posts = [
        c
        for c in standin.calls_of("chat.postMessage")
        if c.at >= started and request["id"] in json.dumps(c.params)
    ]
    assert len(posts) == 2
    # The retry waited for Retry-After (1 s), not less.
    assert posts[1].at - posts[0].at >= 0.95


def test_a_slack_outage_is_logged_and_the_request_stays_decidable(
    standin: SlackStandin,
    service: ServiceProcess,
    queue_call: Callable[..., dict[str, Any]],
    alice: httpx.Client,
) -> None:
    standin.down = True
    started = time.monotonic()
    request = queue_call()
    # The API answered at once, Slack or not.
    assert time.monotonic() - started < 2
    standin.wait_for(lambda: any(c.at > started for c in standin.calls_of("chat.postMessage")))
    fetched = alice.get(f"/requests/{request['id']}").json()
    assert fetched["status"] == "pending"
    decided = alice.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
    assert decided.status_code == 200 and decided.json()["status"] == "approved"
    standin.wait_for(lambda: "Slack chat.postMessage failed" in service.log_path.read_text())
    # ...and, once the notifier gives up on the post, counted for the operator's dashboards.
    scraper = service.token("auditor", f"prometheus-slack-{service.port}")

    def post_failures() -> float:
        metrics = httpx.get(
            f"{service.url}/metrics", headers={"Authorization": f"Bearer {scraper}"}
        ).text
        found = re.search(
            r'^signoff_slack_delivery_failures_total\{kind="post"\} (\S+)$', metrics, re.M
        )
        return float(found[1]) if found else 0.0

    deadline = time.monotonic() + 60  # six attempts with backoff: about 16 s
    while post_failures() < 1:
        assert time.monotonic() < deadline, "the failed post was not counted"
        time.sleep(0.5)
