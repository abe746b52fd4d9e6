"""A group with a Teams webhook gets an Adaptive Card per request and a follow-up at its end.

The service posts to a local stand-in that refuses, as Teams does, anything that is
not a message with one Adaptive Card; the stories read the cards it accepted.
"""

from __future__ import annotations

import time

import httpx
from support import ServiceProcess, queue_held_call
from teams_standin import TeamsStandin

REASON = "writes a generated test file to disk"
ARGUMENTS = {
    "outputPath": "/tmp/login.spec.ts",
    "api_key": "sk-live-0123456789",
    "internal_note": "the merger plan",
    "note": "[Approve now](https://evil.example/phish) **urgent**",
}


def test_the_groups_webhook_gets_the_card_then_the_outcome_with_who_decided(
    teams: TeamsStandin, service: ServiceProcess, gateway: httpx.Client, alice: httpx.Client
) -> None:
    rid = queue_held_call(gateway, server="", arguments=ARGUMENTS)["id"]

    [card] = teams.wait_for(lambda: teams.to("/qa-leads", rid))

    assert card.title == "Approval needed: agent-7 wants to run end\\_codegen\\_session"
    facts = card.facts
    assert facts["Tool"] == "end\\_codegen\\_session"
    assert facts["Caller"] == "agent-7"
    assert facts["Reason"] == REASON
    assert facts["Time left"].split(" ")[0].endswith("s")
    assert facts["Approvers"] == "qa-leads: alice, bob"
    [action] = card.card["actions"]
    assert action == {
        "type": "Action.OpenUrl",
        "title": "Open in Signoff",
        "url": f"{service.url}/requests/{rid}",
    }
    arguments = card.card["body"][-1]["text"]
    assert "sk-live" not in str(card.body) and "merger" not in str(card.body)
    # What the agent wrote cannot make a link or emphasis: the Markdown is escaped.
    assert "\\[Approve now\\]\\(https://evil.example/phish\\) \\*\\*urgent\\*\\*" in arguments
    assert teams.to("/oncall", rid) == []

    decided = alice.post(
        f"/requests/{rid}/decisions", json={"decision": "approve", "comment": "ship it"}
    )
    assert decided.status_code == 200, decided.text

    _, outcome = teams.wait_for(
        lambda: len(teams.to("/qa-leads", rid)) == 2 and teams.to("/qa-leads", rid)
    )
    assert outcome.title.startswith("Approved: end\\_codegen\\_session")
    assert outcome.facts["Outcome"] == "Approved by alice: ship it"
    assert outcome.card["actions"][0]["url"] == f"{service.url}/requests/{rid}"
    assert teams.refused == []


def test_rejection_expiry_and_cancellation_each_get_their_follow_up(
    teams: TeamsStandin, gateway: httpx.Client, service: ServiceProcess
) -> None:
    bob = service.client(service.token("approver", "bob"))
    rejected = queue_held_call(gateway, server="")["id"]
    expired = queue_held_call(gateway, server="expires")["id"]
    cancelled = queue_held_call(gateway, server="")["id"]
    bob.post(f"/requests/{rejected}/decisions", json={"decision": "reject", "comment": "no"})
    gateway.post(f"/requests/{cancelled}/cancel")

    def outcome(rid: str) -> str:
        posts = teams.wait_for(
            lambda: len(teams.to("/qa-leads", rid)) == 2 and teams.to("/qa-leads", rid)
        )
        return posts[1].facts["Outcome"]

    assert outcome(rejected) == "Rejected by bob: no"
    assert outcome(expired) == "Expired: nobody decided in time \\(the call was denied\\)"
    assert outcome(cancelled) == "Cancelled by gw-teams: the caller went away"


def test_reminders_go_to_the_group_and_the_escalation_to_oncall_with_its_own_follow_up(
    teams: TeamsStandin, gateway: httpx.Client, service: ServiceProcess
) -> None:
    rid = queue_held_call(gateway, server="remind")["id"]

    [escalated] = teams.wait_for(lambda: teams.to("/oncall", rid), timeout=20)
    assert escalated.title.startswith("Escalated to oncall: agent-7 wants to run")
    assert "escalated to oncall \\(carol\\)" in escalated.facts["Escalation"]
    qa = teams.to("/qa-leads", rid)
    assert qa[0].title.startswith("Approval needed:")
    assert any(p.title.startswith("Reminder, still waiting") for p in qa[1:])
    assert all("Waiting on" in p.facts for p in qa[1:])

    carol = service.client(service.token("approver", "carol"))
    assert carol.post(f"/requests/{rid}/decisions", json={"decision": "approve"}).status_code == 200

    def ended(path: str) -> bool:
        return any("Outcome" in p.facts for p in teams.to(path, rid))

    teams.wait_for(lambda: ended("/qa-leads") and ended("/oncall"))
    [final] = [p for p in teams.to("/oncall", rid) if "Outcome" in p.facts]
    assert final.facts["Outcome"] == "Approved by carol"


def test_a_failing_webhook_is_retried_in_order_and_a_refusing_one_is_given_up(
    teams: TeamsStandin, gateway: httpx.Client, alice: httpx.Client
) -> None:
    teams.answer_next(503, times=2)
    rid = queue_held_call(gateway, server="")["id"]
    # Decided at once: the follow-up waits for the card, whose first attempts fail.
    assert alice.post(f"/requests/{rid}/decisions", json={"decision": "approve"}).status_code == 200

    posts = teams.wait_for(
        lambda: len(teams.to("/qa-leads", rid)) == 2 and teams.to("/qa-leads", rid)
    )
    assert posts[0].title.startswith("Approval needed") and "Outcome" in posts[1].facts

    teams.answer_next(400)  # e.g. the workflow was deleted: retrying will not help
    before = teams.attempts
    refused = queue_held_call(gateway, server="")["id"]
    teams.wait_for(lambda: teams.attempts > before)
    time.sleep(1.5)  # retries, if any, would have come by now (first retry at 0.3 s)
    assert teams.attempts == before + 1
    assert teams.to("/qa-leads", refused) == []
