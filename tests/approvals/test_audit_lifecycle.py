"""An auditor reads back, months later, exactly what happened to each call (real service)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def trail(team: Any, request_id: str) -> list[dict[str, Any]]:
    """Every exported audit event about one request, oldest first."""
    response = team.auditor.get("/audit/export", params={"format": "jsonl"})
    assert response.status_code == 200, response.text
    events = [json.loads(line) for line in response.text.splitlines()]
    return [event for event in events if event["request_id"] == request_id]


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str, str, str | None]]:
    return [(e["type"], e["actor"], e["channel"], e["outcome"]) for e in events]


def test_an_approved_call_leaves_its_whole_story(team: Any, new_call: Any) -> None:
    body = new_call(arguments={"outputPath": "/tmp/a.spec.ts", "api_key": "sk-live-123"})
    request = team.gateway.post("/requests", json=body).json()
    team.alice.post(
        f"/requests/{request['id']}/decisions", json={"decision": "approve", "comment": "go"}
    )
    team.gateway.post(f"/requests/{request['id']}/claim")
    team.gateway.post(
        f"/requests/{request['id']}/outcome", json={"is_error": False, "summary": "wrote a.spec"}
    )

    events = trail(team, request["id"])
    assert summary(events) == [
        ("request.created", "gw-ci", "gateway", "pending"),
        ("decision.recorded", "alice", "api", "approve"),
        ("request.approved", "alice", "api", "approved"),
        ("call.forwarded", "gw-ci", "gateway", "forwarded"),
        ("call.succeeded", "gw-ci", "gateway", "ok"),
    ]
    created, vote, approved, forwarded, succeeded = events
    assert created["arguments"] == {"outputPath": "/tmp/a.spec.ts", "api_key": "***"}
    assert forwarded["arguments"] == created["arguments"]
    assert vote["arguments"] is None
    assert created["comment"] == "writes a generated test file to disk"
    assert (vote["comment"], approved["comment"], succeeded["comment"]) == (
        "go",
        "go",
        "wrote a.spec",
    )
    for event in events:
        assert (event["tool"], event["server"], event["caller"]) == (
            "end_codegen_session",
            "playwright",
            "agent-7",
        )
        assert event["policy_key"] == "end_codegen_session"
        assert event["time"].endswith("Z") and len(event["time"]) == 27  # microseconds, UTC
    # Nothing else happened meanwhile: consecutive ids, each linked to the one before.
    assert [e["id"] for e in events] == list(range(created["id"], created["id"] + 5))
    assert [e["prev_hash"] for e in events[1:]] == [e["hash"] for e in events[:-1]]


def test_a_call_that_failed_upstream_is_recorded_as_failed(team: Any, new_call: Any) -> None:
    request = team.gateway.post("/requests", json=new_call()).json()
    team.bob.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
    team.gateway.post(f"/requests/{request['id']}/claim")
    team.gateway.post(
        f"/requests/{request['id']}/outcome", json={"is_error": True, "summary": "disk full"}
    )
    last = trail(team, request["id"])[-1]
    assert (last["type"], last["outcome"], last["comment"]) == ("call.failed", "error", "disk full")


def test_a_rejection_records_the_vote_and_the_rejection_with_its_comment(
    team: Any, new_call: Any
) -> None:
    request = team.gateway.post("/requests", json=new_call()).json()
    team.bob.post(
        f"/requests/{request['id']}/decisions",
        json={"decision": "reject", "comment": "write it under e2e/"},
        headers={"X-Signoff-Channel": "cli"},
    )
    events = trail(team, request["id"])
    assert summary(events) == [
        ("request.created", "gw-ci", "gateway", "pending"),
        ("decision.recorded", "bob", "cli", "reject"),
        ("request.rejected", "bob", "cli", "rejected"),
    ]
    assert events[-1]["comment"] == "write it under e2e/"


def test_a_quorum_of_two_records_both_votes_then_the_quorum(team: Any, new_call: Any) -> None:
    request = team.gateway.post("/requests", json=new_call(quorum=2)).json()
    url = f"/requests/{request['id']}/decisions"
    team.alice.post(url, json={"decision": "approve"})
    assert summary(trail(team, request["id"]))[-1] == (
        "decision.recorded",
        "alice",
        "api",
        "approve",
    )
    team.bob.post(url, json={"decision": "approve", "comment": "both of us"})

    events = trail(team, request["id"])
    assert summary(events) == [
        ("request.created", "gw-ci", "gateway", "pending"),
        ("decision.recorded", "alice", "api", "approve"),
        ("decision.recorded", "bob", "api", "approve"),
        ("quorum.reached", "system", "api", "approved"),
        ("request.approved", "bob", "api", "approved"),
    ]
    assert events[3]["comment"] == "2 of 2 approvals"


def test_an_unanswered_request_is_expired_by_the_sweeper(team: Any, new_call: Any) -> None:
    request = team.gateway.post(
        "/requests", json=new_call(timeout_seconds=0.3, on_timeout="allow")
    ).json()
    waited = team.gateway.get(f"/requests/{request['id']}/wait", params={"timeout": 5}).json()
    assert waited["status"] == "expired"

    events = trail(team, request["id"])
    assert summary(events) == [
        ("request.created", "gw-ci", "gateway", "pending"),
        ("request.expired", "system", "sweeper", "allowed"),
    ]
    assert "on_timeout" in events[-1]["comment"]


def test_a_cancelled_call_is_recorded_once(team: Any, new_call: Any) -> None:
    request = team.gateway.post("/requests", json=new_call()).json()
    team.gateway.post(f"/requests/{request['id']}/cancel")
    again = team.gateway.post(f"/requests/{request['id']}/cancel")
    assert again.status_code == 409
    assert summary(trail(team, request["id"])) == [
        ("request.created", "gw-ci", "gateway", "pending"),
        ("request.cancelled", "gw-ci", "gateway", "cancelled"),
    ]


def test_a_call_the_agent_withdrew_names_the_agent_as_the_actor(
    team: Any, service: Any, new_call: Any
) -> None:
    request = team.gateway.post("/requests", json=new_call()).json()
    other_gateway = service.client(service.token("gateway", "gw-other-withdraw"))
    admin = service.client(service.token("admin", "root-withdraw"))
    # Only the creating gateway speaks for its caller; bodies are checked like any other.
    for who, body, code in (
        (other_gateway, {"by_caller": True}, 403),
        (admin, {"by_caller": True}, 403),
        (team.gateway, {"by_caller": True, "actor": "alice"}, 422),
        (team.gateway, {"by_caller": "maybe"}, 422),
    ):
        refused = who.post(f"/requests/{request['id']}/cancel", json=body)
        assert refused.status_code in (code, 404), refused.text
        assert refused.json()["error"]["code"]
    withdrawn = team.gateway.post(f"/requests/{request['id']}/cancel", json={"by_caller": True})
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "cancelled"
    assert summary(trail(team, request["id"])) == [
        ("request.created", "gw-ci", "gateway", "pending"),
        ("request.cancelled", request["caller"], "gateway", "cancelled"),
    ]


def test_refused_attempts_change_nothing_and_leave_no_event(team: Any, new_call: Any) -> None:
    body = new_call()
    request = team.gateway.post("/requests", json=body).json()
    assert team.gateway.post("/requests", json=body).status_code == 200  # retry attaches
    url = f"/requests/{request['id']}/decisions"
    assert team.carol.post(url, json={"decision": "approve"}).status_code == 403  # not a member
    assert team.gateway.post(f"/requests/{request['id']}/claim").status_code == 409  # pending
    team.alice.post(url, json={"decision": "reject"})
    assert team.bob.post(url, json={"decision": "approve"}).status_code == 409  # decided

    assert [e["type"] for e in trail(team, request["id"])] == [
        "request.created",
        "decision.recorded",
        "request.rejected",
    ]


def test_gateways_report_the_calls_they_settled_themselves(team: Any) -> None:
    tool = f"playwright_evaluate_{time.monotonic_ns()}"
    facts = [
        {
            "type": "policy.denied",
            "tool": tool,
            "server": "playwright",
            "caller": "agent-7",
            "arguments": {"script": "document.cookie", "token": "secret-value"},
            "policy_key": "playwright_evaluate",
            "comment": "arbitrary JS",
        },
        {"type": "policy.denied", "tool": tool, "outcome": "hidden"},
        {"type": "policy.rate_limited", "tool": tool, "comment": "30 per minute per grant"},
    ]
    recorded = team.gateway.post("/audit/events", json={"events": facts})
    assert recorded.status_code == 201, recorded.text
    assert recorded.json()["recorded"] == 3

    exported = team.auditor.get("/audit/export", params={"format": "json", "tool": tool}).json()
    assert [(e["type"], e["outcome"], e["caller"], e["actor"], e["channel"]) for e in exported] == [
        ("policy.denied", "denied", "agent-7", "gw-ci", "gateway"),
        ("policy.denied", "hidden", "gw-ci", "gw-ci", "gateway"),
        ("policy.rate_limited", "rate_limited", "gw-ci", "gw-ci", "gateway"),
    ]
    # A gateway that forgot to mask is masked by the service anyway.
    assert exported[0]["arguments"] == {"script": "document.cookie", "token": "***"}
    assert exported[0]["policy_key"] == "playwright_evaluate"

    assert team.alice.post("/audit/events", json={"events": facts}).status_code == 403
    for bad in (
        {"events": []},
        {"events": [{"type": "request.approved", "tool": tool}]},
        {"events": [{"type": "policy.denied"}]},
        {"events": [{"type": "policy.denied", "tool": tool, "at": "yesterday"}]},
    ):
        refused = team.gateway.post("/audit/events", json=bad)
        assert refused.status_code == 422 and refused.json()["error"]["code"], refused.text


def test_confirmations_at_the_client_are_recorded_with_their_arguments_hash(
    team: Any, service: Any
) -> None:
    tool = "confirm_story_tool"
    digest = "ab" * 32
    facts = [
        {"type": "call.confirmed", "tool": tool, "caller": "agent-7", "arguments_hash": digest,
         "arguments": {"target": "prod", "password": "hunter2"}},
        {"type": "call.declined", "tool": tool, "caller": "agent-7", "arguments_hash": digest},
    ]  # fmt: skip
    recorded = team.gateway.post("/audit/events", json={"events": facts})
    assert recorded.status_code == 201, recorded.text
    exported = team.auditor.get("/audit/export", params={"format": "json", "tool": tool}).json()
    seen = [
        (e["type"], e["outcome"], e["caller"], e["actor"], e["arguments_hash"]) for e in exported
    ]
    assert seen == [
        ("call.confirmed", "confirmed", "agent-7", "gw-ci", digest),
        ("call.declined", "declined", "agent-7", "gw-ci", digest),
    ]  # fmt: skip
    assert exported[0]["arguments"]["password"] == "***"
    # Every format shows it; the chain covers it (a changed hash would not verify).
    header, *rows = team.auditor.get(
        "/audit/export", params={"format": "csv", "tool": tool}
    ).text.splitlines()
    assert header.endswith(",arguments_hash,approved_arguments_hash")
    assert all(row.endswith(f",{digest},") for row in rows)  # nothing was edited
    lines = team.auditor.get("/audit/export", params={"format": "jsonl", "tool": tool}).text
    assert [json.loads(line)["arguments_hash"] for line in lines.splitlines()] == [digest, digest]
    # A confirmation is never an approval, and its facts must be what they say.
    for bad in (
        {"type": "call.confirmed", "tool": tool, "arguments_hash": "not-a-hash"},
        {"type": "call.confirmed", "tool": tool, "arguments_hash": "AB" * 32},
        {"type": "call.confirmed", "tool": tool, "outcome": "approved"},
        {"type": "call.declined", "tool": tool, "outcome": "confirmed"},
        {"type": "call.approved", "tool": tool},
    ):
        refused = team.gateway.post("/audit/events", json={"events": [bad]})
        assert refused.status_code == 422 and refused.json()["error"]["code"], bad
    result = subprocess.run(
        [sys.executable, "-m", "approvals.cli.main", "audit", "verify", "--db", service.db_url],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_route_changes_or_removes_audit_events(team: Any, service: Any) -> None:
    admin = service.client(service.token("admin", "root-audit"))
    for method in ("PUT", "PATCH", "DELETE"):
        for path in ("/audit/events", "/audit/events/1", "/audit/export"):
            response = admin.request(method, path)
            assert response.status_code in (404, 405), (method, path, response.status_code)


def test_concurrent_writers_extend_one_unbroken_chain(
    team: Any, service: Any, new_call: Any
) -> None:
    ids = [team.gateway.post("/requests", json=new_call()).json()["id"] for _ in range(12)]

    def settle(i: int) -> int:
        who = team.alice if i % 2 else team.bob
        decision = "approve" if i % 3 else "reject"
        codes = [who.post(f"/requests/{ids[i]}/decisions", json={"decision": decision})]
        codes.append(team.gateway.post("/audit/events", json={"events": [
            {"type": "call.allowed", "tool": "playwright_click", "caller": f"racer-{i}"}
        ]}))  # fmt: skip
        return max(r.status_code for r in codes)

    with ThreadPoolExecutor(12) as pool:
        assert set(pool.map(settle, range(12))) == {201}

    result = subprocess.run(
        [sys.executable, "-m", "approvals.cli.main", "audit", "verify", "--db", service.db_url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    exported = team.auditor.get("/audit/export", params={"format": "jsonl"}).text.splitlines()
    assert result.stdout.strip() == f"ok: {len(exported)} events"


def test_the_dashboard_timeline_reads_the_same_events(
    team: Any, service: Any, new_call: Any
) -> None:
    from approvals.audit import timeline
    from approvals.db import make_engine, session_scope

    request = team.gateway.post("/requests", json=new_call()).json()
    team.alice.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})

    engine = make_engine(service.db_url)
    try:
        with session_scope(engine) as session:
            events = timeline(session, request["id"])
    finally:
        engine.dispose()
    assert [e.type for e in events] == ["request.created", "decision.recorded", "request.approved"]
    assert [e.id for e in events] == [e["id"] for e in trail(team, request["id"])]
    assert events[0].arguments_dict() == request["arguments"]


def test_a_notifier_records_who_it_reached(team: Any, service: Any, new_call: Any) -> None:
    from approvals import lifecycle
    from approvals.db import make_engine, session_scope

    request = team.gateway.post("/requests", json=new_call()).json()
    engine = make_engine(service.db_url)
    try:
        with session_scope(engine) as session:
            lifecycle.record_notification(
                session, request["id"], channel="slack", recipients=["#qa-leads", "U0ALICE"]
            )
    finally:
        engine.dispose()
    notified = trail(team, request["id"])[-1]
    assert (notified["type"], notified["channel"], notified["outcome"]) == (
        "request.notified",
        "slack",
        "sent",
    )
    assert notified["comment"] == "notified #qa-leads, U0ALICE"
