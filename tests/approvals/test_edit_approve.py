"""Approvers change a held call's arguments before approving it, and try to abuse that."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import queue_held_call

from gateway_plugin.policy import canonical_arguments_hash

# The service runs on SQLite, then on PostgreSQL (tests/conftest.py).
STORES = ("sqlite", "postgresql")
QA = {"action": "require_approval", "approvers": "qa-leads"}
POLICY: dict[str, Any] = {
    "version": "1",
    "default": "deny",
    "tools": {
        "fixed/end_codegen_session": {**QA, "editable": False},
        # Production deploys need carol; everything else the QA leads.
        "tiered/deploy": {
            "action": "require_approval",
            "approvers": "qa-leads",
            "rules": [
                {
                    "if": {"env": {"eq": "prod"}},
                    "action": "require_approval",
                    "approvers": ["carol"],
                },
                {"if": {"env": {"eq": "nowhere"}}, "action": "deny"},
                {"action": "require_approval"},
            ],
        },
    },
}


@pytest.fixture(scope="module", autouse=True)
def _policy(service: Any) -> None:
    service.enforce(POLICY)


def _decide(client: Any, request: dict[str, Any], **body: Any) -> Any:
    return client.post(f"/requests/{request['id']}/decisions", json={"decision": "approve", **body})


def test_alice_edits_the_output_path_and_approves(team: Any) -> None:
    request = queue_held_call(team.gateway, arguments={"outputPath": "/etc/passwd", "n": 1})
    decided = _decide(team.alice, request, arguments={"outputPath": "/tmp/safe.spec.ts", "n": 1})
    assert decided.status_code == 200, decided.text
    body = decided.json()
    assert body["status"] == "approved" and body["edited_by"] == "alice"
    assert body["arguments"] == {"outputPath": "/etc/passwd", "n": 1}  # the original is kept
    assert body["approved_arguments"] == {"outputPath": "/tmp/safe.spec.ts", "n": 1}
    assert body["approved_arguments_hash"] == canonical_arguments_hash(
        {"outputPath": "/tmp/safe.spec.ts", "n": 1}
    )
    claimed = team.gateway.post(f"/requests/{request['id']}/claim").json()
    assert claimed["approved_arguments"] == {"outputPath": "/tmp/safe.spec.ts", "n": 1}

    events = team.auditor.get(
        "/audit/export", params={"format": "jsonl", "tool": "end_codegen_session"}
    ).text.splitlines()
    mine = [json.loads(line) for line in events if request["id"] in line]
    edited = [e for e in mine if e["type"] == "arguments.edited"]
    assert len(edited) == 1 and edited[0]["actor"] == "alice"
    assert "changed keys: outputPath" in edited[0]["comment"]
    # Both hashes are fields of their own: what the agent asked, and what alice approved.
    assert edited[0]["arguments_hash"] == request["arguments_hash"]
    assert edited[0]["approved_arguments_hash"] == body["approved_arguments_hash"]
    assert list(edited[0])[-1] == "approved_arguments_hash"
    # Every later fact about the edited call names the approved arguments; the request's
    # creation, before any edit, does not.
    hashes = {e["type"]: (e["arguments_hash"], e["approved_arguments_hash"]) for e in mine}
    both = (request["arguments_hash"], body["approved_arguments_hash"])
    for kind in ("decision.recorded", "request.approved", "call.forwarded"):
        assert hashes[kind] == both, kind
    assert hashes["request.created"][1] is None
    forwarded = [e for e in mine if e["type"] == "call.forwarded"]
    assert forwarded[0]["arguments"] == {"outputPath": "/tmp/safe.spec.ts", "n": 1}
    assert "approved_arguments_hash=" in forwarded[0]["comment"]
    header, *rows = team.auditor.get(
        "/audit/export", params={"format": "csv", "tool": "end_codegen_session"}
    ).text.splitlines()
    assert header.endswith(",arguments_hash,approved_arguments_hash")
    row = next(r for r in rows if request["id"] in r and ",arguments.edited," in r)
    assert row.endswith(f",{request['arguments_hash']},{body['approved_arguments_hash']}")


def test_with_quorum_two_an_edit_voids_earlier_approvals(team: Any) -> None:
    request = queue_held_call(team.gateway, quorum=2, arguments={"outputPath": "/tmp/a.ts"})
    assert _decide(team.alice, request).json()["approvals"] == 1
    edited = _decide(team.bob, request, arguments={"outputPath": "/tmp/b.ts"}).json()
    # Bob's edit is his approval of the new arguments; alice's approval of the old is void.
    assert edited["status"] == "pending" and edited["approvals"] == 1
    assert [d["approver"] for d in edited["decisions"]] == ["bob"]
    # Alice approved other arguments, so she may vote again, on what bob wrote.
    stale = _decide(team.alice, request, arguments_hash=request["arguments_hash"])
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "arguments_changed"
    again = _decide(team.alice, request, arguments_hash=edited["approved_arguments_hash"])
    assert again.status_code == 200 and again.json()["status"] == "approved"


def test_an_edit_comes_only_with_an_approval(team: Any) -> None:
    request = queue_held_call(team.gateway)
    refused = team.alice.post(
        f"/requests/{request['id']}/decisions",
        json={"decision": "reject", "arguments": {"outputPath": "/tmp/x"}},
    )
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "edit_needs_approve"
    assert team.alice.get(f"/requests/{request['id']}").json()["status"] == "pending"


def test_a_rule_that_is_not_editable_refuses_edits(team: Any) -> None:
    request = queue_held_call(team.gateway, server="fixed")
    assert request["editable"] is False
    refused = _decide(team.alice, request, arguments={"outputPath": "/tmp/x"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "not_editable"
    assert _decide(team.alice, request).json()["status"] == "approved"


def test_decided_requests_cannot_be_edited(team: Any) -> None:
    for decision in ("approve", "reject"):
        request = queue_held_call(team.gateway)
        team.bob.post(f"/requests/{request['id']}/decisions", json={"decision": decision})
        late = _decide(team.alice, request, arguments={"outputPath": "/tmp/late"})
        assert late.status_code == 409 and late.json()["error"]["code"] == "already_decided"
        assert team.alice.get(f"/requests/{request['id']}").json()["approved_arguments"] is None


def test_the_agent_cannot_edit_its_own_call(team: Any, service: Any) -> None:
    # agent-7 is listed as an approver of this entry, and also made the call.
    agent = service.client(service.token("approver", "agent-7"))
    request = queue_held_call(team.gateway, server="with-agent", caller="agent-7")
    refused = _decide(agent, request, arguments={"outputPath": "/tmp/mine"})
    assert refused.status_code == 403 and "made this call" in refused.json()["error"]["message"]


def test_an_edit_cannot_move_the_call_to_other_approvers_or_a_denial(team: Any) -> None:
    request = queue_held_call(
        team.gateway, tool="deploy", server="tiered", arguments={"env": "staging"}
    )
    assert request["approvers"] == ["alice", "bob"]
    for env in ("prod", "nowhere"):
        refused = _decide(team.alice, request, arguments={"env": env})
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "edit_changes_terms"
    assert _decide(team.alice, request, arguments={"env": "qa"}).json()["status"] == "approved"


def test_an_approver_cannot_set_a_masked_value(team: Any) -> None:
    request = queue_held_call(team.gateway, arguments={"url": "https://x", "api_token": "s3cret"})
    assert request["arguments"]["api_token"] == "***"
    for forged in (
        {"url": "https://x", "api_token": "mine"},  # a secret of the approver's choosing
        {"url": "https://x", "api_token": "***", "password": "***"},  # a mask for nothing
    ):
        refused = _decide(team.alice, request, arguments=forged)
        assert refused.status_code == 422, forged
        assert refused.json()["error"]["code"] == "masked_value_edited"
    kept = _decide(team.alice, request, arguments={"url": "https://y", "api_token": "***"})
    assert kept.status_code == 200 and kept.json()["approved_arguments"]["api_token"] == "***"


def test_oversized_deep_and_malformed_edits_are_refused(team: Any) -> None:
    request = queue_held_call(team.gateway)
    big = _decide(team.alice, request, arguments={"outputPath": "x" * 70_000})
    assert big.status_code == 413 and big.json()["error"]["code"] == "arguments_too_large"
    deep: Any = "leaf"
    for _ in range(40):
        deep = {"d": deep}
    too_deep = _decide(team.alice, request, arguments=deep)
    assert too_deep.status_code == 422
    for bad in ([1, 2], "text", 7):
        wrong = _decide(team.alice, request, arguments=bad)
        assert wrong.status_code == 422, bad
    forged = _decide(team.alice, request, arguments={"a": 1}, edited_by="mallory")
    assert forged.status_code == 422
    assert team.alice.get(f"/requests/{request['id']}").json()["status"] == "pending"
