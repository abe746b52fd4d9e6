"""A grant is its creator's standing decision: it ends when their authority does.

Dave and Erin may approve end_codegen_session calls alone, so they may grant them. When
Dave's token is revoked, or the policy stops listing Erin, or the rule starts asking two
people, the grant they made stops covering calls at the gateway's next use: the service
revokes it as "system" and says why in the audit log, and the call is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

# The service runs on SQLite, then on PostgreSQL (tests/conftest.py).
STORES = ("sqlite", "postgresql")
ROOT = Path(__file__).resolve().parents[2]
END = "end_codegen_session"


def policy(approvers: list[str], quorum: int = 1) -> dict[str, Any]:
    return {
        "version": "1",
        "default": "deny",
        "approvers": {"dave": {}, "erin": {}},
        "tools": {END: {"action": "require_approval", "approvers": approvers, "quorum": quorum}},
    }


EVERYONE = ["alice", "dave", "erin"]


@pytest.fixture(scope="module", autouse=True)
def _policy(service: Any) -> Iterator[None]:
    service.enforce(policy(EVERYONE))
    yield
    service.enforce(policy(EVERYONE))


@pytest.fixture
def restore_policy(service: Any) -> Iterator[None]:
    yield
    service.enforce(policy(EVERYONE))


def grant(client: httpx.Client, caller: str) -> dict[str, Any]:
    created = client.post(
        "/grants", json={"tool": END, "caller": caller, "expires_in_seconds": 3600}
    )
    assert created.status_code == 201, created.text
    return dict(created.json())


def use(gateway: httpx.Client, caller: str, **arguments: Any) -> httpx.Response:
    body = {"tool": END, "server": "playwright", "caller": caller, "arguments": arguments}
    return gateway.post("/grants/use", json=body)


def revocations(auditor: httpx.Client, grant_id: str) -> list[dict[str, Any]]:
    lines = auditor.get("/audit/export", params={"format": "jsonl", "tool": END}).text
    events = [json.loads(line) for line in lines.splitlines() if grant_id in line]
    return [e for e in events if e["type"] == "grant.revoked"]


def test_a_grant_ends_when_its_creators_token_is_revoked(team: Any, service: Any) -> None:
    dave = service.client(service.token("approver", "dave"))
    made = grant(dave, "agent-31")
    assert use(team.gateway, "agent-31").status_code == 200

    revoked = subprocess.run(
        [sys.executable, "-m", "approvals.cli.main", "tokens", "revoke", "dave",
         "--db", service.db_url],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr
    refused = use(team.gateway, "agent-31")
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "no_grant"
    [ended] = revocations(team.auditor, made["id"])
    assert ended["actor"] == "system" and ended["outcome"] == "revoked"
    assert "dave no longer holds a live API token" in ended["comment"]
    assert made["id"] not in [g["id"] for g in team.auditor.get("/grants").json()["items"]]

    # A new token for dave is a new decision to make: the old grant stays ended.
    dave_again = service.client(service.token("approver", "dave"))
    assert use(team.gateway, "agent-31").status_code == 404
    assert len(revocations(team.auditor, made["id"])) == 1
    assert dave_again.get("/grants").status_code == 200


def test_a_grant_ends_when_the_policy_no_longer_lists_its_creator(
    team: Any, service: Any, restore_policy: None
) -> None:
    erin = service.client(service.token("approver", "erin"))
    made = grant(erin, "agent-32")
    kept = grant(team.alice, "agent-33")
    assert use(team.gateway, "agent-32").status_code == 200

    service.enforce(policy(["alice", "dave"]))
    refused = use(team.gateway, "agent-32")
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "no_grant"
    [ended] = revocations(team.auditor, made["id"])
    assert ended["actor"] == "system"
    assert "the policy no longer lets erin grant it" in ended["comment"]
    # Putting erin back does not bring the grant back; alice's grant was never touched.
    service.enforce(policy(EVERYONE))
    assert use(team.gateway, "agent-32").status_code == 404
    assert use(team.gateway, "agent-33").status_code == 200
    assert revocations(team.auditor, kept["id"]) == []


def test_a_grant_ends_when_the_rule_starts_asking_two_people(
    team: Any, service: Any, restore_policy: None
) -> None:
    made = grant(team.alice, "agent-34")
    service.enforce(policy(EVERYONE, quorum=2))
    assert use(team.gateway, "agent-34").status_code == 404
    [ended] = revocations(team.auditor, made["id"])
    assert ended["actor"] == "system" and "asks 2 approvers" in ended["comment"]


def test_a_grant_is_not_ended_by_a_caller_who_is_not_a_gateway(team: Any, service: Any) -> None:
    # Only a gateway's use checks the grant; nobody else can make the service revoke it.
    made = grant(team.alice, "agent-35")
    assert (
        team.alice.post(
            "/grants/use",
            json={"tool": END, "server": "playwright", "caller": "agent-35", "arguments": {}},
        ).status_code
        == 403
    )
    assert revocations(team.auditor, made["id"]) == []
    assert use(team.gateway, "agent-35").status_code == 200


def test_a_call_under_another_rule_is_not_covered_and_does_not_end_the_grant(
    team: Any, service: Any, restore_policy: None
) -> None:
    tiered = policy(EVERYONE)
    tiered["tools"][END]["rules"] = [
        {"if": {"env": {"eq": "prod"}}, "action": "require_approval", "approvers": ["erin"]},
        {"action": "require_approval"},
    ]
    service.enforce(tiered)
    made = grant(team.alice, "agent-36")
    # Production calls are erin's alone: alice's grant does not cover them...
    refused = use(team.gateway, "agent-36", env="prod")
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "no_grant"
    # ...and an agent cannot end it by making one: the calls it was made for still run.
    assert revocations(team.auditor, made["id"]) == []
    assert use(team.gateway, "agent-36", env="dev").status_code == 200
