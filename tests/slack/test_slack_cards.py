"""What a card says, built from a request as the service stores it (no Slack needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk.models.blocks import Block

from approvals.schemas import DecisionPublic, RequestPublic
from approvals.slack import cards
from gateway_plugin.policy import parse_policy

NOW = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)
POLICY = parse_policy(
    {
        "version": "1",
        "approvers": {
            "alice": {"slack_user": "U0ALICE"},
            "bob": {"slack_user": "U0BOB"},
            "eve": {},
        },
        "approver_groups": {"qa-leads": {"members": ["alice", "bob", "eve"]}},
        "redact": ["internal_*"],
        "tools": {"t": {"action": "require_approval", "approvers": "qa-leads"}},
    }
)


def request(**overrides: Any) -> RequestPublic:
    fields: dict[str, Any] = {
        "id": "3f2a9c0d1e7b4a55",
        "status": "pending",
        "allowed": False,
        "tool": "end_codegen_session",
        "server": "playwright",
        "caller": "agent-7",
        "gateway": "gw",
        "session_id": None,
        "arguments": {"sessionId": "s1"},
        "arguments_hash": "0" * 64,
        "policy_key": "end_codegen_session",
        "reason": "writes a generated test file to disk",
        "approver_group": "qa-leads",
        "approvers": ["alice", "bob", "eve"],
        "quorum": 1,
        "approvals": 0,
        "on_timeout": "deny",
        "created_at": NOW,
        "expires_at": NOW + timedelta(minutes=15),
        "decided_at": None,
        "decided_by": None,
        "comment": None,
        "channel": None,
        "claimed_at": None,
        "outcome": None,
        "decisions": [],
    }
    fields.update(overrides)
    return RequestPublic.model_validate(fields)


def rendered(card: cards.Card) -> str:
    return json.dumps(card.blocks_json(), ensure_ascii=False)


def buttons(card: cards.Card) -> list[str]:
    return [
        element["action_id"]
        for block in card.blocks_json()
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def test_a_pending_card_has_everything_an_approver_needs() -> None:
    card = cards.request_card(request(), base_url="https://signoff.example/", policy=POLICY)
    assert all(isinstance(block, Block) for block in card.blocks)
    text = rendered(card)
    assert text.count("Approval needed: end_codegen_session") == 1
    assert "*agent-7* wants to run `end_codegen_session` on `playwright`." in text
    assert "writes a generated test file to disk" in text
    # Members with a Slack id are mentioned; one without is named.
    assert "<@U0ALICE> <@U0BOB> eve" in text and card.text.endswith("<@U0ALICE> <@U0BOB>")
    assert "0 of 1" in text
    expires = int((NOW + timedelta(minutes=15)).timestamp())
    assert f"<!date^{expires}^{{date_short_pretty}} at {{time}}|2026-01-31 09:15 UTC>" in text
    assert "https://signoff.example/requests/3f2a9c0d1e7b4a55" in text
    assert buttons(card) == ["signoff_approve", "signoff_reject", "signoff_edit", "signoff_open"]
    [actions] = [b for b in card.blocks_json() if b["type"] == "actions"]
    assert [e.get("style") for e in actions["elements"]] == ["primary", "danger", None, None]
    assert [e.get("value") for e in actions["elements"][:2]] == ["3f2a9c0d1e7b4a55"] * 2


def test_arguments_are_masked_cut_and_escaped() -> None:
    arguments = {
        "api_token": "xoxb-real-secret",
        "internal_note": "do not show",
        "script": "x" * 5000,
        "items": list(range(100)),
        "html": "<!channel> & <https://evil.example|click>",
    }
    card = cards.request_card(request(arguments=arguments), base_url="http://s", policy=POLICY)
    [section] = [b for b in card.blocks_json() if b.get("block_id") == "arguments"]
    text = section["text"]["text"]
    assert "xoxb-real-secret" not in text and "do not show" not in text
    assert text.count("***") == 2
    assert "(5000 chars)" in text and "x" * 201 not in text
    assert "80 more items" in text
    assert "<!channel>" not in text and "&lt;!channel&gt; &amp; &lt;https://evil.example" in text
    assert len(text) < 3000  # Slack's limit for a section's text


def test_a_long_argument_listing_is_cut_with_a_pointer_to_the_dashboard() -> None:
    arguments = {f"key{i:03d}": "v" * 150 for i in range(35)}
    card = cards.request_card(request(arguments=arguments), base_url="http://s", policy=POLICY)
    [section] = [b for b in card.blocks_json() if b.get("block_id") == "arguments"]
    assert "the dashboard shows them all" in section["text"]["text"]
    assert len(section["text"]["text"]) < 3000


def test_quorum_progress_names_who_approved_so_far() -> None:
    vote = DecisionPublic(
        approver="alice", decision="approve", comment=None, channel="slack", created_at=NOW
    )
    card = cards.request_card(
        request(quorum=2, approvals=1, decisions=[vote]), base_url="http://s", policy=POLICY
    )
    assert "1 of 2 (alice)" in rendered(card)
    assert buttons(card)[:2] == ["signoff_approve", "signoff_reject"]
    assert cards.thread_replies(request(quorum=2, approvals=1, decisions=[vote])) == [
        ":white_check_mark: alice approved via Slack (1 of 2)"
    ]


def test_a_decided_card_shows_who_when_and_the_comment_without_buttons() -> None:
    decided = request(
        status="rejected",
        decided_at=NOW + timedelta(minutes=3),
        decided_by="bob",
        comment="write it under e2e/ instead",
        channel="dashboard",
    )
    card = cards.request_card(decided, base_url="http://s", policy=POLICY)
    text = rendered(card)
    assert ":x: Rejected: end_codegen_session" in text
    assert "*Rejected by bob* via the dashboard <!date^" in text
    assert ">write it under e2e/ instead" in text
    assert buttons(card) == ["signoff_open"]
    assert card.text == "end_codegen_session on playwright for agent-7: rejected"


def test_expired_and_cancelled_cards_and_replies() -> None:
    expired = request(
        status="expired",
        decided_at=NOW,
        decided_by="system",
        comment="no decision before the timeout; denied per on_timeout",
        channel="sweeper",
    )
    assert "*Expired*" in rendered(cards.request_card(expired, base_url="http://s"))
    [reply] = cards.thread_replies(expired)
    assert reply.startswith(":hourglass: Expired: no decision")
    cancelled = request(status="cancelled", decided_by="gw", decided_at=NOW)
    assert buttons(cards.request_card(cancelled, base_url="http://s")) == ["signoff_open"]
    assert cards.closing_reply(cancelled).startswith(":no_entry_sign: Cancelled by gw")


def test_without_a_policy_approvers_are_named_not_mentioned() -> None:
    card = cards.request_card(request(), base_url="http://s", policy=None)
    assert "alice bob eve" in rendered(card) and "<@" not in card.text


def test_the_reject_modal_asks_for_a_reason() -> None:
    view = cards.reject_modal("3f2a9c0d1e7b4a55", "end_codegen_session", '{"request_id": "x"}')
    data = view.to_dict()
    assert data["type"] == "modal" and data["callback_id"] == "signoff_reject"
    assert data["private_metadata"] == '{"request_id": "x"}'
    [reason] = [b for b in data["blocks"] if b["type"] == "input"]
    assert reason["block_id"] == "reason" and reason["element"]["action_id"] == "reason"
    assert data["submit"]["text"] == "Reject"


def test_the_thread_holds_one_reply_per_vote_in_order() -> None:
    votes = [
        DecisionPublic(
            approver="alice", decision="approve", comment=None, channel="slack", created_at=NOW
        ),
        DecisionPublic(
            approver="bob", decision="reject", comment="<b>no</b>", channel="cli", created_at=NOW
        ),
    ]
    settled = request(status="rejected", quorum=2, approvals=1, decisions=votes)
    assert cards.thread_replies(settled) == [
        ":white_check_mark: alice approved via Slack (1 of 2)",
        ":x: bob rejected via the CLI: &lt;b&gt;no&lt;/b&gt;",
    ]
    assert cards.thread_replies(request()) == []


def test_the_card_shows_the_escalation_before_and_after_it_happens() -> None:
    step: dict[str, Any] = {
        "group": "oncall",
        "members": ["alice", "eve"],
        "after_seconds": 1800.0,
        "at": NOW + timedelta(minutes=30),
        "announced": False,
    }
    before = rendered(
        cards.request_card(request(escalations=[step]), base_url="https://s", policy=POLICY)
    )
    after = rendered(
        cards.request_card(
            request(escalations=[{**step, "announced": True}]), base_url="https://s", policy=POLICY
        )
    )

    assert "*Escalation*" in before and "escalates <!date^" in before
    assert "*Escalated*" in after and "escalated <!date^" in after
    assert "oncall <@U0ALICE> eve" in after
    assert "Escalat" not in rendered(cards.request_card(request(), base_url="https://s"))


def test_the_preview_is_shown_escaped_and_cut_within_slacks_limits() -> None:
    hostile = "<!channel> & <https://evil.example|click> ```" + "&" * 5000
    preview = {"status": "ok", "text": hostile, "error": None}
    card = cards.request_card(request(preview=preview), base_url="http://s", policy=POLICY)
    [section] = [b for b in card.blocks_json() if b.get("block_id") == "preview"]
    text = section["text"]["text"]
    assert text.startswith("*Preview*\n```&lt;!channel&gt; &amp; &lt;https://evil.example")
    assert "<!channel>" not in text and "the dashboard shows all of it" in text
    assert text.count("```") == 2 and len(text) < 3000


def test_a_failed_preview_says_so() -> None:
    preview = {"status": "failed", "text": None, "error": "get_codegen_session <timed out>"}
    card = cards.request_card(request(preview=preview), base_url="http://s", policy=POLICY)
    [section] = [b for b in card.blocks_json() if b.get("block_id") == "preview"]
    assert section["text"]["text"] == "*Preview* failed: get_codegen_session &lt;timed out&gt;"
    assert "preview" not in [
        b.get("block_id")
        for b in cards.request_card(request(), base_url="http://s", policy=POLICY).blocks_json()
    ]


def test_an_edit_in_the_history_restarts_the_count_and_keeps_every_reply() -> None:
    def vote(name: str) -> DecisionPublic:
        return DecisionPublic(
            approver=name, decision="approve", comment=None, channel="api", created_at=NOW
        )

    # What the request shows after bob's edit voided alice's first approval.
    now = request(quorum=2, approvals=2, decisions=[vote("bob"), vote("alice")])
    edit = cards.EditNote("bob", "slack", "changed keys: sessionId; approvals voided: alice")
    history = [vote("alice"), edit, vote("bob"), vote("alice")]
    assert cards.thread_replies(now, history) == [
        ":white_check_mark: alice approved via the API (1 of 2)",
        ":pencil2: bob edited the arguments via Slack: "
        "changed keys: sessionId; approvals voided: alice",
        ":white_check_mark: bob approved via the API (1 of 2)",
        ":white_check_mark: alice approved via the API (2 of 2)",
    ]
    # Without the history (the request's votes alone) the voided approval's reply is lost.
    assert len(cards.thread_replies(now)) == 2
