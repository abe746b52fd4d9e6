"""Approvers allow a caller's calls for a while; gateways use the grants; people try to cheat."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

# The service runs on SQLite, then on PostgreSQL (tests/conftest.py).
STORES = ("sqlite", "postgresql")
END = "end_codegen_session"


def grant(client: httpx.Client, **overrides: Any) -> httpx.Response:
    body: dict[str, Any] = {
        "tool": END,
        "server": "playwright",
        "caller": "agent-7",
        "expires_in_seconds": 3600,
    }
    body.update(overrides)
    return client.post("/grants", json=body)


def use(gateway: httpx.Client, **overrides: Any) -> httpx.Response:
    body: dict[str, Any] = {
        "tool": END,
        "server": "playwright",
        "caller": "agent-7",
        "arguments": {"outputPath": "/tmp/x.spec.ts"},
    }
    body.update(overrides)
    return gateway.post("/grants/use", json=body)


def audit_of(team: Any, grant_id: str) -> list[dict[str, Any]]:
    lines = team.auditor.get("/audit/export", params={"format": "jsonl"}).text.splitlines()
    return [json.loads(line) for line in lines if grant_id in line]


@pytest.fixture(autouse=True)
def _no_grants_left(team: Any) -> Any:
    """Each story starts with no grant in force, so none covers another story's calls."""
    yield
    for item in team.alice.get("/grants").json()["items"]:
        team.alice.delete(f"/grants/{item['id']}")


def test_alice_allows_agent_7_for_an_hour_and_the_gateway_uses_it(team: Any) -> None:
    created = grant(team.alice)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["created_by"] == "alice" and body["arguments"] is None and body["uses"] == 0
    listed = team.auditor.get("/grants").json()["items"]
    assert [g["id"] for g in listed] == [body["id"]]

    used = use(team.gateway)
    assert used.status_code == 200 and used.json()["uses"] == 1
    # No request was made: the audit event is the record of the call.
    assert team.alice.get("/requests").json()["items"] == []
    events = audit_of(team, body["id"])
    assert [e["type"] for e in events] == ["grant.created", "grant.used"]
    assert events[1]["actor"] == "gw-ci" and events[1]["caller"] == "agent-7"


def test_a_grant_is_for_its_caller_tool_and_arguments_only(team: Any) -> None:
    grant(team.alice, arguments={"outputPath": "/tmp/x.spec.ts"})
    assert use(team.gateway, caller="agent-8").json()["error"]["code"] == "no_grant"
    assert use(team.gateway, arguments={"outputPath": "/etc/passwd"}).status_code == 404
    assert use(team.gateway, tool="playwright_navigate").status_code == 404
    assert use(team.gateway, server="open").status_code == 404
    assert use(team.gateway).status_code == 200


def test_who_may_not_grant(team: Any, service: Any) -> None:
    admin = service.client(service.token("admin", "root-grants"))
    agent = service.client(service.token("agent", "agent-grants"))
    for client in (team.gateway, team.auditor, agent):
        assert grant(client).status_code == 403
    # carol approves, but not end_codegen_session (only the QA leads do); the admin is not listed.
    for client in (team.carol, admin):
        refused = grant(client)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "not_allowed_to_grant"
    # Two approvers must agree on these calls: one person cannot grant them.
    quorum = grant(team.alice, server="quorum-2")
    assert quorum.status_code == 403 and quorum.json()["error"]["code"] == "quorum_rule"
    # Nobody grants their own calls.
    assert grant(team.alice, caller="alice").status_code == 403
    assert team.auditor.get("/grants").json()["items"] == []


def test_bad_grant_bodies_are_refused_and_nothing_is_stored(team: Any) -> None:
    for bad in (
        {"expires_in_seconds": 7 * 24 * 3600 + 1},
        {"expires_in_seconds": 0},
        {"expires_in_seconds": -60},
        {"max_uses": 0},
        {"arguments": ["not", "an", "object"]},
        {"uses": 0},  # forged: the service counts
        {"created_by": "bob"},
        {"caller": ""},
    ):
        refused = grant(team.alice, **bad)
        assert refused.status_code == 422, bad
        assert "error" in refused.json()
    assert team.auditor.get("/grants").json()["items"] == []
    assert grant(team.alice, expires_in_seconds=7 * 24 * 3600).status_code == 201


def test_max_uses_holds_under_racing_gateways(team: Any) -> None:
    created = grant(team.alice, max_uses=3).json()
    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(lambda _: use(team.gateway).status_code, range(12)))
    assert sorted(statuses) == [200] * 3 + [404] * 9
    used = [e for e in audit_of(team, created["id"]) if e["type"] == "grant.used"]
    assert len(used) == 3
    # Used up: it is no longer in force.
    assert team.alice.get("/grants").json()["items"] == []


def test_a_revoked_grant_covers_nothing(team: Any) -> None:
    created = grant(team.alice).json()
    assert use(team.gateway).status_code == 200
    # carol is not listed for the tool; bob is, and may revoke alice's grant.
    assert team.carol.delete(f"/grants/{created['id']}").status_code == 403
    assert team.gateway.delete(f"/grants/{created['id']}").status_code == 403
    revoked = team.bob.delete(f"/grants/{created['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_by"] == "bob"
    assert use(team.gateway).status_code == 404
    again = team.alice.delete(f"/grants/{created['id']}")
    assert again.status_code == 409
    assert team.alice.delete("/grants/no-such-grant").status_code == 404
    types = [e["type"] for e in audit_of(team, created["id"])]
    assert types == ["grant.created", "grant.used", "grant.revoked"]


def test_only_gateways_use_grants(team: Any, service: Any) -> None:
    grant(team.alice)
    agent = service.client(service.token("agent", "agent-7-uses"))
    for client in (team.alice, team.auditor, agent):
        assert use(client).status_code == 403
    assert use(team.gateway, extra="field").status_code == 422
