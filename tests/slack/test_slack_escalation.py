"""Nobody in qa-leads answers; after a few seconds the request escalates to oncall.

Carol (oncall) sees the card from the start but may not decide yet: her click,
her API call and the dashboard all say so. Once the step's time has come the
card says "Escalated", the dashboard too, and her click approves. The audit log
holds the reminders and the escalation. (The policy says seconds, not minutes.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_standin import SlackStandin
from slack_support import SERVICE_POLICY, block_action, card_text, write_service_policy
from support import ServiceProcess, dashboard_sign_in

ESCALATE_AFTER = 4.0

POLICY: dict[str, Any] = {
    **SERVICE_POLICY,
    "approvers": {**SERVICE_POLICY["approvers"], "dave": {}},
    "approver_groups": {
        **SERVICE_POLICY["approver_groups"],
        "oncall": {"members": ["carol", "dave"]},
    },
    "tools": {
        "end_codegen_session": {
            **SERVICE_POLICY["tools"]["end_codegen_session"],
            "timeout": "60s",
            "remind_every": "1s",
            "escalate": [{"after": f"{ESCALATE_AFTER:g}s", "to": "oncall"}],
        }
    },
}


@pytest.fixture(scope="module")
def service_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_service_policy(tmp_path_factory.mktemp("escalation-policy"), POLICY)


@pytest.fixture(scope="module")
def carol(service: ServiceProcess) -> Iterator[httpx.Client]:
    with service.client(service.token("approver", "carol")) as client:
        yield client


def ephemeral_to(standin: SlackStandin, user: str, since: float) -> list[str]:
    return [
        c.params["text"]
        for c in standin.calls_of("chat.postEphemeral")
        if c.params.get("user") == user and c.at >= since
    ]


def test_an_oncall_member_decides_only_once_the_request_escalated(
    standin: SlackStandin,
    service: ServiceProcess,
    queue_call: Callable[..., dict[str, Any]],
    click: Callable[..., httpx.Response],
    carol: httpx.Client,
) -> None:
    request = queue_call()
    created = time.monotonic()
    card = standin.wait_for(lambda: standin.card_for(request["id"]))
    assert [s["group"] for s in request["escalations"]] == ["oncall"]
    assert "*Escalation*" in card_text(card) and "<@U0CAROL>" in card_text(card)

    # Too early: Slack, the API and the dashboard all refuse Carol, and say when.
    since = time.monotonic()
    assert click(block_action("U0CAROL", card, "signoff_approve")).status_code == 200
    [told] = standin.wait_for(lambda: ephemeral_to(standin, "U0CAROL", since))
    assert "escalates to oncall" in told
    early = carol.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
    assert early.status_code == 403, early.text
    assert early.json()["error"]["code"] == "not_allowed_to_decide"
    page = dashboard_sign_in(service, service.token("approver", "dave"))
    detail = page.http.get(f"/requests/{request['id']}").text
    assert "Escalates to" in detail and "oncall" in detail
    assert 'value="approve"' not in detail
    assert time.monotonic() - created < ESCALATE_AFTER, "the early checks took too long"

    # The step's time comes: the sweeper announces it and the card is redrawn.
    escalated = standin.wait_for(
        lambda: (c := standin.card_for(request["id"])) and "*Escalated*" in card_text(c) and c,
        timeout=ESCALATE_AFTER + 10,
    )
    detail = page.http.get(f"/requests/{request['id']}").text
    assert "Escalated to" in detail and 'value="approve"' in detail

    # The thread pinged people while nobody answered: reminders name qa-leads (never
    # the caller), and the escalation names oncall's Carol.
    def thread_texts() -> list[str]:
        return [m["text"] for m in standin.thread(escalated["channel"], escalated["ts"])]

    standin.wait_for(lambda: any("Escalated to oncall" in t for t in thread_texts()))
    reminders = [t for t in thread_texts() if t.startswith(":bell: Reminder")]
    assert reminders and all("<@U0ALICE>" in t and "<@U0BOB>" in t for t in reminders)
    assert not any("U0AGENT7" in t for t in reminders)
    [ping] = [t for t in thread_texts() if "Escalated to oncall" in t]
    assert "<@U0CAROL>" in ping and "you may now decide" in ping

    assert click(block_action("U0CAROL", escalated, "signoff_approve")).status_code == 200
    deadline = time.monotonic() + 10
    while (seen := carol.get(f"/requests/{request['id']}").json())["status"] == "pending":
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)
    assert seen["status"] == "approved" and seen["decided_by"] == "carol"

    auditor = service.client(service.token("auditor", "audrey-escalation"))
    rows = auditor.get("/audit/export", params={"format": "json"}).json()
    mine = [row for row in rows if row["request_id"] == request["id"]]
    types = [row["type"] for row in mine]
    assert types.count("request.escalated") == 1
    assert types.count("request.reminded") >= 2  # every second for ~4 s
    [step] = [row for row in mine if row["type"] == "request.escalated"]
    assert step["actor"] == "system" and "oncall (carol, dave)" in step["comment"]
    assert types.index("request.escalated") < types.index("request.approved")
