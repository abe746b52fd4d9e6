"""An approval belongs to the policy it was given under, and to its time.

A team tightens its policy while an agent's call is approved but not yet run, or
an agent retries an approved call much later: in both cases the call asks again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import ServiceProcess, held_call_body, service_policy


@pytest.fixture
def changing(tmp_path: Path) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(tmp_path / "signoff.db")
    proc.start()
    yield proc
    proc.stop()


def clients(service: ServiceProcess, *names: str) -> dict[str, httpx.Client]:
    roles = {"gw": "gateway"}
    return {n: service.client(service.token(roles.get(n, "approver"), n)) for n in names}


def test_a_retry_after_the_policy_tightened_asks_the_people_it_names_now(
    changing: ServiceProcess,
) -> None:
    team = clients(changing, "gw", "alice", "bob", "carol")
    body = held_call_body()
    first = team["gw"].post("/requests", json=body).json()
    team["alice"].post(f"/requests/{first['id']}/decisions", json={"decision": "approve"})

    tightened = service_policy()
    tightened["tools"]["end_codegen_session"] = {
        "action": "require_approval",
        "approvers": ["bob", "carol"],
        "quorum": 2,
    }
    changing.enforce(tightened)

    retry = team["gw"].post("/requests", json=body)
    assert retry.status_code == 201, retry.text  # a new request, not alice's approval
    again = retry.json()
    assert again["id"] != first["id"] and again["status"] == "pending"
    assert (again["approvers"], again["quorum"]) == (["bob", "carol"], 2)
    refused = team["alice"].post(f"/requests/{again['id']}/decisions", json={"decision": "approve"})
    assert refused.status_code == 403


def test_an_approval_is_used_within_one_timeout_period_or_not_at_all(
    changing: ServiceProcess,
) -> None:
    team = clients(changing, "gw", "alice")
    body = held_call_body(timeout_seconds=1)
    first = team["gw"].post("/requests", json=body).json()
    team["alice"].post(f"/requests/{first['id']}/decisions", json={"decision": "approve"})
    time.sleep(1.3)

    stale = team["gw"].post(f"/requests/{first['id']}/claim")
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "approval_stale"
    retry = team["gw"].post("/requests", json=body)
    assert retry.status_code == 201 and retry.json()["id"] != first["id"]
