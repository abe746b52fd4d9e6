"""Who may do what: each rule of the trust model (docs/security.md), and an attempt to break it.

The service runs its own policy (tests/support.py `service_policy`): end_codegen_session
needs one of qa-leads (alice, bob); server "open" lets any approver decide.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from support import ServiceProcess, dashboard_sign_in, held_call, held_call_body

from approvals import errors, lifecycle
from approvals.db import make_engine
from approvals.schemas import POLICY_FIELDS
from gateway_plugin.policy import canonical_arguments_hash

# The service runs on SQLite, then on PostgreSQL (tests/conftest.py).
STORES = ("sqlite", "postgresql")


@pytest.fixture(scope="module")
def tokens(service: ServiceProcess) -> dict[str, httpx.Client]:
    names = {
        "gw": "gateway",
        "gw-other": "gateway",
        "alice": "approver",
        "carol": "approver",
        "audrey": "auditor",
        "root": "admin",
        "claude": "agent",
    }
    return {name: service.client(service.token(role, name)) for name, role in names.items()}


def _error(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


# --- The service decides the terms -------------------------------------------------------


@pytest.mark.parametrize("field", POLICY_FIELDS)
def test_a_gateway_cannot_send_approval_terms(tokens: Any, field: str) -> None:
    body = {**held_call_body(), field: [] if field == "approvers" else 1}
    refused = tokens["gw"].post("/requests", json=body)
    assert refused.status_code == 422 and _error(refused) == "set_by_policy"
    assert field in refused.json()["error"]["message"]


def test_a_hash_that_is_not_the_arguments_hash_is_refused(tokens: Any) -> None:
    body = held_call_body()
    body["arguments_hash"] = canonical_arguments_hash({"outputPath": "/tmp/harmless"})
    refused = tokens["gw"].post("/requests", json=body)
    assert refused.status_code == 422 and _error(refused) == "arguments_hash_mismatch"


def test_the_service_hashes_and_sets_terms_from_its_own_policy(tokens: Any) -> None:
    body = held_call_body(quorum=2)
    created = tokens["gw"].post("/requests", json=body).json()
    assert created["arguments_hash"] == canonical_arguments_hash(body["arguments"])
    assert (created["approvers"], created["quorum"]) == (["alice", "bob"], 2)
    assert created["reason"] == "writes a generated test file to disk"
    assert created["gateway"] == "gw" and created["caller"] == "agent-7"


def test_only_calls_the_policy_holds_can_be_queued(tokens: Any) -> None:
    # default "deny" in the service's policy: nothing for a human to approve.
    refused = tokens["gw"].post("/requests", json=held_call_body(tool="read_file", server="x"))
    assert refused.status_code == 422 and _error(refused) == "not_require_approval"


def test_without_a_policy_nothing_can_be_approved() -> None:
    with pytest.raises(errors.Conflict) as refused:
        lifecycle.approval_terms(None, held_call())
    assert refused.value.code == "no_policy"


# Text the edge accepts (a NUL is refused there: tests/approvals/test_input_limits.py).
# Lone surrogates cannot be sent as JSON by the client at all (httpx refuses to
# encode them), so they would test the client, not the service.
_TEXT = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    arguments=st.dictionaries(
        st.text(_TEXT, min_size=1, max_size=8),
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(_TEXT, max_size=20),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(_TEXT), inner),
            max_leaves=8,
        ),
        max_size=5,
    ),
    forged=st.dictionaries(st.sampled_from(POLICY_FIELDS), st.integers(0, 3), max_size=2),
)
def test_whatever_a_gateway_sends_the_terms_are_the_policys(
    tokens: Any, arguments: dict[str, Any], forged: dict[str, Any]
) -> None:
    body = {**held_call_body(arguments=arguments), **forged}
    answer = tokens["gw"].post("/requests", json=body)
    if forged:
        assert answer.status_code == 422 and _error(answer) == "set_by_policy"
        return
    assert answer.status_code in (200, 201), answer.text
    stored = answer.json()
    assert stored["arguments_hash"] == canonical_arguments_hash(arguments)
    assert (stored["approvers"], stored["quorum"], stored["on_timeout"]) == (
        ["alice", "bob"],
        1,
        "deny",
    )


# --- Agents reach nothing --------------------------------------------------------------


def test_an_agent_token_only_learns_who_it_is(tokens: Any, service: ServiceProcess) -> None:
    agent = tokens["claude"]
    assert agent.get("/whoami").json() == {"name": "claude", "role": "agent"}
    request = tokens["gw"].post("/requests", json=held_call_body()).json()
    attempts = [
        agent.post("/requests", json=held_call_body()),
        agent.get("/requests"),
        agent.get(f"/requests/{request['id']}"),
        agent.get(f"/requests/{request['id']}/wait", params={"timeout": 0}),
        agent.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"}),
        agent.post(f"/requests/{request['id']}/claim"),
        agent.post(f"/requests/{request['id']}/cancel"),
        agent.get("/policy"),
        agent.get("/audit/export"),
        agent.post("/audit/events", json={"events": [{"type": "call.allowed", "tool": "t"}]}),
    ]
    assert [a.status_code for a in attempts] == [403] * len(attempts)
    with pytest.raises(AssertionError):  # the dashboard's sign-in refuses it
        dashboard_sign_in(service, service.token("agent", "claude-dash"))


# --- Requests are bound to their gateway -----------------------------------------------


def test_another_gateway_cannot_touch_a_request(tokens: Any) -> None:
    request = tokens["gw"].post("/requests", json=held_call_body()).json()
    tokens["alice"].post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
    other = tokens["gw-other"]
    rid = request["id"]
    attempts = [
        other.get(f"/requests/{rid}"),
        other.get(f"/requests/{rid}/wait", params={"timeout": 0}),
        other.post(f"/requests/{rid}/claim"),
        other.post(f"/requests/{rid}/outcome", json={"is_error": False}),
        other.post(f"/requests/{rid}/cancel"),
    ]
    assert [a.status_code for a in attempts] == [404] * len(attempts)
    # The approval is still there for the gateway that asked.
    assert tokens["gw"].post(f"/requests/{rid}/claim").status_code == 200


def test_a_retry_through_another_gateway_does_not_attach(tokens: Any) -> None:
    body = held_call_body()
    first = tokens["gw"].post("/requests", json=body).json()
    elsewhere = tokens["gw-other"].post("/requests", json=body)
    assert elsewhere.status_code == 201 and elsewhere.json()["id"] != first["id"]


def test_only_the_creating_gateway_waits_and_claims(tokens: Any) -> None:
    rid = tokens["gw"].post("/requests", json=held_call_body()).json()["id"]
    for who in ("alice", "audrey", "root"):
        waited = tokens[who].get(f"/requests/{rid}/wait", params={"timeout": 0})
        claimed = tokens[who].post(f"/requests/{rid}/claim")
        assert (waited.status_code, claimed.status_code) == (403, 403), who
    assert tokens["gw"].get(f"/requests/{rid}/wait", params={"timeout": 0}).status_code == 200


def test_an_admin_may_cancel_any_request(tokens: Any) -> None:
    rid = tokens["gw"].post("/requests", json=held_call_body()).json()["id"]
    cancelled = tokens["root"].post(f"/requests/{rid}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["decided_by"] == "root"


# --- Decisions come from the people the policy lists ------------------------------------


def test_an_admin_is_no_silent_approver(tokens: Any) -> None:
    listed = tokens["gw"].post("/requests", json=held_call_body()).json()
    anyone = tokens["gw"].post("/requests", json=held_call_body(approvers=[])).json()
    for request in (listed, anyone):
        refused = tokens["root"].post(
            f"/requests/{request['id']}/decisions", json={"decision": "approve"}
        )
        assert refused.status_code == 403, request["approvers"]
    # Where the policy lists nobody, any approver token decides.
    decided = tokens["carol"].post(
        f"/requests/{anyone['id']}/decisions", json={"decision": "approve"}
    )
    assert decided.json()["status"] == "approved"


# --- One bad row never breaks reads ------------------------------------------------------


def test_a_row_with_unencodable_text_does_not_break_the_queue(
    tokens: Any, service: ServiceProcess
) -> None:
    rid = tokens["gw"].post("/requests", json=held_call_body()).json()["id"]
    # What an unchecked create once stored: JSON text that decodes to a lone surrogate.
    engine = make_engine(service.db_url)
    try:
        with engine.begin() as db:
            db.execute(
                text("UPDATE approval_requests SET approvers = :a, arguments = :b WHERE id = :id"),
                {"a": json.dumps(["\ud800"]), "b": json.dumps({"p": "\udfff"}), "id": rid},
            )
    finally:
        engine.dispose()
    listed = tokens["alice"].get("/requests", params={"limit": 500})
    assert listed.status_code == 200
    [bad] = [r for r in listed.json()["items"] if r["id"] == rid]
    assert bad["approvers"] == ["?"] and bad["arguments"] == {"p": "?"}
    assert tokens["alice"].get(f"/requests/{rid}").status_code == 200
    queue = dashboard_sign_in(service, service.token("approver", "alice-dash")).http
    assert queue.get("/").status_code == 200
    assert queue.get(f"/requests/{rid}").status_code == 200


# --- Audit facts -------------------------------------------------------------------------


def test_a_gateway_reports_only_what_it_settled_itself_and_under_its_own_name(
    tokens: Any,
) -> None:
    forged = [
        {"type": "request.approved", "tool": "end_codegen_session"},
        {"type": "decision.recorded", "tool": "end_codegen_session"},
        {"type": "policy.denied", "tool": "end_codegen_session", "outcome": "approved"},
        {"type": "call.allowed", "tool": "end_codegen_session", "outcome": "denied"},
        {"type": "call.allowed", "tool": "t", "actor": "alice"},
    ]
    for fact in forged:
        refused = tokens["gw"].post("/audit/events", json={"events": [fact]})
        assert refused.status_code == 422, fact
    recorded = tokens["gw"].post(
        "/audit/events", json={"events": [{"type": "call.allowed", "tool": "trust-audit"}]}
    )
    assert recorded.status_code == 201
    lines = (
        tokens["audrey"]
        .get("/audit/export", params={"format": "jsonl", "tool": "trust-audit"})
        .text.splitlines()
    )
    [event] = [json.loads(line) for line in lines]
    assert (event["actor"], event["channel"]) == ("gw", "gateway")
