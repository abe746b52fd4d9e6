"""What a forged or broken Edit & approve, grant or revoke form gets from the dashboard:
a 4xx, never a 5xx, and nothing changes."""

from __future__ import annotations

from typing import Any

import pytest


def _decide(person: Any, request: dict[str, Any], **form: str) -> Any:
    return person.http.post(
        f"/requests/{request['id']}/decide",
        data=form,
        headers={"X-CSRF-Token": person.csrf, "Accept": "application/json"},
    )


@pytest.mark.parametrize(
    ("arguments", "status"),
    [
        ("", 422),
        ("{", 422),
        ("[1, 2]", 422),
        ('"text"', 422),
        ("[" * 5000 + "]" * 5000, 422),  # deep enough to break a naive parser
        ('{"path": "' + "x" * 70_000 + '"}', 413),
        ('{"path": "/tmp/a", "token": "mine"}', 422),  # sets a masked value
    ],
)
def test_a_broken_edit_is_refused_and_the_request_stays_pending(
    person: Any, queue_call: Any, gateway: Any, arguments: str, status: int
) -> None:
    request = queue_call()
    refused = _decide(person("alice"), request, decision="edit", arguments=arguments)
    assert refused.status_code == status, refused.text
    assert "error" in refused.json()
    stored = gateway.get(f"/requests/{request['id']}").json()
    assert stored["status"] == "pending" and stored["approved_arguments"] is None


def test_an_edit_without_the_pages_csrf_token_changes_nothing(
    person: Any, queue_call: Any, gateway: Any
) -> None:
    request = queue_call()
    alice = person("alice")
    refused = alice.http.post(
        f"/requests/{request['id']}/decide",
        data={"decision": "edit", "arguments": '{"path": "/tmp/evil"}'},
        headers={"Accept": "application/json"},
    )
    assert refused.status_code == 403
    assert gateway.get(f"/requests/{request['id']}").json()["approved_arguments"] is None


def test_an_auditor_can_neither_edit_nor_grant_and_an_unknown_decision_is_refused(
    person: Any, queue_call: Any, gateway: Any
) -> None:
    request = queue_call()
    audrey = person("audrey")
    for decision in ("edit", "approve_grant"):
        refused = _decide(audrey, request, decision=decision, arguments='{"path": "/x"}')
        assert refused.status_code == 403
    odd = _decide(person("alice"), request, decision="approve_forever")
    assert odd.status_code == 400
    assert gateway.get(f"/requests/{request['id']}").json()["status"] == "pending"
    assert gateway.post("/grants/use", json={
        "tool": request["tool"], "server": request["server"], "caller": request["caller"],
    }).status_code == 404  # fmt: skip


def test_a_stale_card_does_not_approve_arguments_it_never_showed(
    person: Any, queue_call: Any, gateway: Any
) -> None:
    request = queue_call(quorum=2)
    bob = person("bob")
    assert _decide(bob, request, decision="edit", arguments='{"path": "/tmp/b"}').status_code == 200
    stale = _decide(
        person("alice"), request, decision="approve", arguments_hash=request["arguments_hash"]
    )
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "arguments_changed"


def test_revoking_on_the_grants_page_needs_the_csrf_token(
    person: Any, queue_call: Any, gateway: Any, service: Any, tokens: dict[str, str]
) -> None:
    alice_api = service.client(tokens["alice"])
    created = alice_api.post(
        "/grants", json={"tool": "end_codegen_session", "caller": "agent-7",
                         "expires_in_seconds": 60},
    )  # fmt: skip
    assert created.status_code == 201
    alice = person("alice")
    page = alice.http.get("/grants")
    assert page.status_code == 200 and created.json()["id"] in page.text
    forged = alice.http.post(f"/grants/{created.json()['id']}/revoke", data={})
    assert forged.status_code == 403
    assert (
        alice.http.post("/grants/no-such/revoke", data={"csrf_token": alice.csrf}).status_code
        == 404
    )
    done = alice.http.post(
        f"/grants/{created.json()['id']}/revoke", data={"csrf_token": alice.csrf}
    )
    assert done.status_code == 303
    assert alice_api.get("/grants").json()["items"] == []
