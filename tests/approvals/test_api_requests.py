"""Stories of gateways and approvers using the REST API of a real service process."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from gateway_plugin.policy import canonical_arguments_hash

# The service runs on SQLite, then on PostgreSQL (tests/conftest.py).
STORES = ("sqlite", "postgresql")


def test_gateway_queues_a_call_and_alice_approves_it(team: Any, new_call: Any) -> None:
    created = team.gateway.post("/requests", json=new_call())
    assert created.status_code == 201
    request = created.json()
    assert request["status"] == "pending" and request["allowed"] is False
    assert request["approvers"] == ["alice", "bob"]

    decided = team.alice.post(
        f"/requests/{request['id']}/decisions", json={"decision": "approve", "comment": "fine"}
    )
    assert decided.status_code == 200
    body = decided.json()
    assert body["status"] == "approved" and body["allowed"] is True
    assert body["decided_by"] == "alice" and body["comment"] == "fine"
    assert [(d["approver"], d["decision"]) for d in body["decisions"]] == [("alice", "approve")]

    seen = team.gateway.get(f"/requests/{request['id']}").json()
    assert seen["status"] == "approved"


def test_secret_looking_arguments_never_reach_the_database(team: Any, new_call: Any) -> None:
    body = new_call(arguments={"url": "https://db.internal", "auth": {"password": "hunter2"}})
    stored = team.gateway.post("/requests", json=body).json()
    assert stored["arguments"] == {"url": "https://db.internal", "auth": {"password": "***"}}
    # The hash covers the arguments as sent, so another password needs another approval.
    assert stored["arguments_hash"] == canonical_arguments_hash(body["arguments"])


def test_an_approval_runs_its_call_once(team: Any, new_call: Any) -> None:
    request = team.gateway.post("/requests", json=new_call()).json()
    team.bob.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})

    assert team.gateway.post(f"/requests/{request['id']}/claim").status_code == 200
    second = team.gateway.post(f"/requests/{request['id']}/claim")
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "already_claimed"

    outcome = team.gateway.post(
        f"/requests/{request['id']}/outcome", json={"is_error": False, "summary": "wrote file"}
    )
    assert outcome.json()["outcome"]["summary"] == "wrote file"


def test_a_claimed_approval_does_not_cover_the_next_identical_call(
    team: Any, new_call: Any
) -> None:
    body = new_call()
    first = team.gateway.post("/requests", json=body).json()
    team.alice.post(f"/requests/{first['id']}/decisions", json={"decision": "approve"})
    team.gateway.post(f"/requests/{first['id']}/claim")

    again = team.gateway.post("/requests", json=body)
    assert again.status_code == 201
    assert again.json()["id"] != first["id"] and again.json()["status"] == "pending"


def test_pending_requests_cannot_be_claimed(team: Any, new_call: Any) -> None:
    request = team.gateway.post("/requests", json=new_call()).json()
    refused = team.gateway.post(f"/requests/{request['id']}/claim")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "not_approved"


def test_tokens_are_checked_and_roles_enforced(team: Any, service: Any, new_call: Any) -> None:
    no_token = team.anonymous.get("/requests")
    assert no_token.status_code == 401
    assert no_token.json()["error"]["code"] == "unauthenticated"

    forged = service.client("so_not-a-real-token").get("/requests")
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_token"

    approver_creating = team.alice.post("/requests", json=new_call())
    assert approver_creating.status_code == 403
    assert "gateway" in approver_creating.json()["error"]["message"]

    gateway_deciding = team.gateway.post(
        f"/requests/{team.gateway.post('/requests', json=new_call()).json()['id']}/decisions",
        json={"decision": "approve"},
    )
    assert gateway_deciding.status_code == 403

    assert team.auditor.get("/requests").status_code == 200
    assert team.gateway.get("/requests").status_code == 403


def test_bad_input_gets_json_4xx_never_500(team: Any, new_call: Any) -> None:
    missing_tool = new_call()
    del missing_tool["tool"]
    cases = [
        team.gateway.post("/requests", json=missing_tool),
        team.gateway.post("/requests", json=new_call(arguments_hash="not-a-hash")),
        team.gateway.post("/requests", json={**new_call(), "quorum": 0}),
        team.gateway.post("/requests", json=new_call(unknown_field=1)),
        team.gateway.post(
            "/requests", content=b"{not json", headers={"content-type": "application/json"}
        ),
        team.alice.post("/requests/nope/decisions", json={"decision": "approve"}),
        team.alice.post("/requests/nope/decisions", json={"decision": "maybe"}),
        team.alice.get("/requests", params={"status": "sideways"}),
        team.alice.get("/requests", params={"cursor": "!!!"}),
        team.alice.get("/requests", params={"limit": 0}),
        team.gateway.get("/requests/nope"),
        team.gateway.get("/requests/nope/wait", params={"timeout": -1}),
    ]
    for response in cases:
        assert 400 <= response.status_code < 500, response.text
        error = response.json()["error"]
        assert error["code"] and error["message"]
    assert cases[5].status_code == 404


def test_idempotency_key_makes_retries_safe(team: Any, new_call: Any) -> None:
    body = new_call()
    headers = {"Idempotency-Key": "retry-123"}
    first = team.gateway.post("/requests", json=body, headers=headers)
    retry = team.gateway.post("/requests", json=body, headers=headers)
    assert (first.status_code, retry.status_code) == (201, 200)
    assert first.json()["id"] == retry.json()["id"]

    reused_for_other_call = team.gateway.post("/requests", json=new_call(), headers=headers)
    assert reused_for_other_call.status_code == 409
    assert reused_for_other_call.json()["error"]["code"] == "idempotency_conflict"


def test_a_retry_of_the_identical_call_attaches_to_the_open_request(
    team: Any, new_call: Any
) -> None:
    body = new_call()
    first = team.gateway.post("/requests", json=body)
    retry = team.gateway.post("/requests", json=body)
    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json()["id"] == first.json()["id"]

    other_caller = team.gateway.post("/requests", json={**body, "caller": "agent-9"})
    assert other_caller.status_code == 201 and other_caller.json()["id"] != first.json()["id"]


def test_quorum_needs_distinct_approvers(team: Any, new_call: Any) -> None:
    request = team.gateway.post("/requests", json=new_call(quorum=2)).json()
    url = f"/requests/{request['id']}/decisions"

    one = team.alice.post(url, json={"decision": "approve"}).json()
    assert one["status"] == "pending" and one["approvals"] == 1

    twice = team.alice.post(url, json={"decision": "approve"})
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "duplicate_vote"

    two = team.bob.post(url, json={"decision": "approve"}).json()
    assert two["status"] == "approved" and two["approvals"] == 2
    assert two["decided_by"] == "bob"


def test_one_rejection_rejects_even_with_a_quorum(team: Any, new_call: Any) -> None:
    request = team.gateway.post("/requests", json=new_call(quorum=2)).json()
    url = f"/requests/{request['id']}/decisions"
    team.alice.post(url, json={"decision": "approve"})

    rejected = team.bob.post(url, json={"decision": "reject", "comment": "wrong directory"})
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["comment"] == "wrong directory"

    late = team.alice.post(url, json={"decision": "approve"})
    assert late.status_code == 409
    assert "already rejected by bob" in late.json()["error"]["message"]
    assert team.gateway.get(f"/requests/{request['id']}").json()["status"] == "rejected"


def test_the_caller_can_never_approve_its_own_call(team: Any, new_call: Any) -> None:
    request = team.gateway.post("/requests", json=new_call(caller="alice")).json()
    refused = team.alice.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
    assert refused.status_code == 403
    assert "cannot approve" in refused.json()["error"]["message"]
    assert team.gateway.get(f"/requests/{request['id']}").json()["status"] == "pending"


def test_only_members_of_the_group_decide(team: Any, new_call: Any) -> None:
    request = team.gateway.post("/requests", json=new_call()).json()
    refused = team.carol.post(f"/requests/{request['id']}/decisions", json={"decision": "reject"})
    assert refused.status_code == 403
    assert "not a member of qa-leads" in refused.json()["error"]["message"]
    after = team.gateway.get(f"/requests/{request['id']}").json()
    assert after["status"] == "pending" and after["decisions"] == []

    open_to_all = team.gateway.post("/requests", json=new_call(approvers=[]))
    decided = team.carol.post(
        f"/requests/{open_to_all.json()['id']}/decisions", json={"decision": "approve"}
    )
    assert decided.json()["status"] == "approved"


def test_unanswered_requests_expire_and_apply_on_timeout(team: Any, new_call: Any) -> None:
    denied = team.gateway.post("/requests", json=new_call(timeout_seconds=0.5)).json()
    allowed = team.gateway.post(
        "/requests", json=new_call(timeout_seconds=0.5, on_timeout="allow")
    ).json()

    waited = team.gateway.get(f"/requests/{denied['id']}/wait", params={"timeout": 5}).json()
    assert waited["status"] == "expired" and waited["allowed"] is False
    assert waited["decided_by"] == "system"

    lenient = team.gateway.get(f"/requests/{allowed['id']}/wait", params={"timeout": 5}).json()
    assert lenient["status"] == "expired" and lenient["allowed"] is True

    too_late = team.alice.post(f"/requests/{denied['id']}/decisions", json={"decision": "approve"})
    assert too_late.status_code == 409


def test_long_poll_answers_as_soon_as_a_human_decides(team: Any, new_call: Any) -> None:
    request = team.gateway.post("/requests", json=new_call()).json()
    url = f"/requests/{request['id']}/wait"

    started = time.monotonic()
    idle = team.gateway.get(url, params={"timeout": 0.5}).json()
    assert idle["status"] == "pending" and 0.4 < time.monotonic() - started < 3

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(team.gateway.get, url, params={"timeout": 20})
        time.sleep(0.3)
        decided_at = time.monotonic()
        team.bob.post(f"/requests/{request['id']}/decisions", json={"decision": "reject"})
        answer = waiting.result(timeout=10)
    assert answer.json()["status"] == "rejected"
    assert time.monotonic() - decided_at < 1.0


def test_twenty_conflicting_decisions_have_exactly_one_winner(
    team: Any, service: Any, new_call: Any
) -> None:
    names = [f"racer-{i}" for i in range(20)]
    clients = [service.client(service.token("approver", name)) for name in names]
    request = team.gateway.post("/requests", json=new_call(approvers=names)).json()
    url = f"/requests/{request['id']}/decisions"

    def vote(i: int) -> httpx.Response:
        decision = "approve" if i % 2 else "reject"
        return clients[i].post(url, json={"decision": decision, "comment": names[i]})

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(vote, range(20)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 19, statuses
    winner = next(r.json() for r in responses if r.status_code == 200)
    stored = team.gateway.get(f"/requests/{request['id']}").json()
    assert len(stored["decisions"]) == 1
    assert stored["decided_by"] == winner["decided_by"] == stored["decisions"][0]["approver"]
    assert stored["status"] == (
        "approved" if stored["decisions"][0]["decision"] == "approve" else "rejected"
    )


def test_the_gateway_cancels_when_the_agent_goes_away(team: Any, new_call: Any) -> None:
    request = team.gateway.post("/requests", json=new_call()).json()
    cancelled = team.gateway.post(f"/requests/{request['id']}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    late = team.alice.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
    assert late.status_code == 409


def test_listing_is_newest_first_filtered_and_paged(team: Any, new_call: Any) -> None:
    tool = f"send_mail_{time.monotonic_ns()}"
    ids = [team.gateway.post("/requests", json=new_call(tool=tool)).json()["id"] for _ in range(5)]
    team.alice.post(f"/requests/{ids[0]}/decisions", json={"decision": "approve"})

    pages: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"tool": tool, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = team.alice.get("/requests", params=params).json()
        pages.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == list(reversed(ids))

    pending = team.alice.get("/requests", params={"tool": tool, "status": "pending"}).json()
    assert [item["id"] for item in pending["items"]] == list(reversed(ids[1:]))


def test_healthz_answers_without_a_token(service: Any) -> None:
    assert httpx.get(f"{service.url}/healthz").json() == {"status": "ok"}
