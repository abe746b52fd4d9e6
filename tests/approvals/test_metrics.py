"""An operator scrapes GET /metrics with an auditor or admin token and sees what the
service did: requests created by tool, decisions by outcome and channel, pending
requests, decision latency, claims, expiries, HTTP durations by route template,
websocket subscribers, Slack failures and gateway-reported outcomes. The output
passes `promtool check metrics` (Debian's prometheus package)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import anyio
import httpx
import pytest
from support import ServiceProcess, queue_held_call, require
from ws_support import receive, subscribe

# Counted per process from its own events: both stores count the same way.
STORES = ("sqlite", "postgresql")


def scrape(service: ServiceProcess, token: str) -> str:
    answer = httpx.get(
        f"{service.url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return answer.text


def value(text: str, name: str, **labels: str) -> float:
    """The sample `name{labels}` in Prometheus text, 0 when absent."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return 0.0


@pytest.fixture(scope="module")
def auditor(service: ServiceProcess) -> str:
    return service.token("auditor", f"prometheus-{service.port}")


def test_an_approval_shows_up_in_the_counters_and_the_latency_histogram(
    service: ServiceProcess, auditor: str
) -> None:
    before = scrape(service, auditor)
    gateway = service.client(service.token("gateway", f"gw-metrics-{service.port}"))
    approver = service.client(service.token("approver", f"alice-metrics-{service.port}"))

    # `approvers=[]`: the policy entry that lets any approver decide.
    approved = queue_held_call(gateway, approvers=[])
    rejected = queue_held_call(gateway, approvers=[])
    pending = queue_held_call(gateway, approvers=[])
    for request, decision in ((approved, "approve"), (rejected, "reject")):
        voted = approver.post(f"/requests/{request['id']}/decisions", json={"decision": decision})
        assert voted.status_code == 200, voted.text
    assert gateway.post(f"/requests/{approved['id']}/claim").status_code == 200
    outcome = {"is_error": False, "summary": "wrote the file"}
    assert gateway.post(f"/requests/{approved['id']}/outcome", json=outcome).status_code == 200

    after = scrape(service, auditor)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("signoff_requests_created_total", tool="end_codegen_session") == 3
    assert grew("signoff_decisions_total", outcome="approved", channel="api") == 1
    assert grew("signoff_decisions_total", outcome="rejected", channel="api") == 1
    assert grew("signoff_decision_seconds_count") == 2
    assert grew("signoff_claims_total") == 1
    assert grew("signoff_gateway_outcomes_total", outcome="ok") == 1
    assert value(after, "signoff_requests_pending") >= 1
    # Route templates, never ids: one series for every request's decisions.
    assert pending["id"] not in after
    assert (
        grew(
            "signoff_http_request_duration_seconds_count",
            method="POST",
            route="/api/v1/requests/{request_id}/decisions",
            status="200",
        )
        == 2
    )


def test_an_expiry_and_a_gateways_own_verdicts_are_counted(
    service: ServiceProcess, auditor: str
) -> None:
    before = scrape(service, auditor)
    gateway = service.client(service.token("gateway", f"gw-expiry-{service.port}"))
    request = queue_held_call(gateway, timeout_seconds=1)
    facts = [
        {"type": "policy.denied", "tool": "playwright_evaluate", "caller": "agent-7"},
        {"type": "policy.rate_limited", "tool": "playwright_click", "caller": "agent-7"},
    ]
    assert gateway.post("/audit/events", json={"events": facts}).status_code == 201

    deadline = time.monotonic() + 10
    while gateway.get(f"/requests/{request['id']}").json()["status"] == "pending":
        assert time.monotonic() < deadline, "the sweeper did not expire the request"
        time.sleep(0.2)
    after = scrape(service, auditor)
    assert (
        value(after, "signoff_expiries_total", on_timeout="denied")
        - value(before, "signoff_expiries_total", on_timeout="denied")
        == 1
    )
    for outcome in ("denied", "rate_limited"):
        assert (
            value(after, "signoff_gateway_outcomes_total", outcome=outcome)
            - value(before, "signoff_gateway_outcomes_total", outcome=outcome)
            == 1
        )


def test_promtool_accepts_the_real_output(service: ServiceProcess, auditor: str) -> None:
    promtool = shutil.which("promtool")
    require(promtool is not None, "promtool is not installed (apt-get install prometheus)")
    assert promtool is not None
    gateway = service.client(service.token("gateway", f"gw-promtool-{service.port}"))
    queue_held_call(gateway)
    text = scrape(service, auditor)
    for family in (
        "signoff_requests_created",
        "signoff_decisions",
        "signoff_requests_pending",
        "signoff_decision_seconds",
        "signoff_claims",
        "signoff_expiries",
        "signoff_http_request_duration_seconds",
        "signoff_websocket_subscribers",
        "signoff_slack_delivery_failures",
        "signoff_deliveries",
        "signoff_outbox_deliveries",
        "signoff_gateway_outcomes",
    ):
        assert re.search(rf"^# TYPE {family}(_total)? ", text, re.MULTILINE), family
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("role", ["auditor", "admin"])
def test_auditors_and_admins_may_scrape(service: ServiceProcess, role: str) -> None:
    scrape(service, service.token(role, f"scraper-{role}-{service.port}"))


@pytest.mark.parametrize("role", ["agent", "gateway", "approver"])
def test_other_roles_are_refused_403(service: ServiceProcess, role: str) -> None:
    token = service.token(role, f"nosy-{role}-{service.port}")
    answer = httpx.get(f"{service.url}/metrics", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    "authorization", [None, "Bearer so_not-a-real-token", "Basic YWRtaW46YWRtaW4=", "Bearer"]
)
def test_no_or_a_bad_token_gets_401_without_a_single_metric(
    service: ServiceProcess, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = httpx.get(f"{service.url}/metrics", headers=headers)
    assert answer.status_code == 401
    assert "signoff_" not in answer.text
    assert answer.json()["error"]["code"] in ("unauthenticated", "invalid_token")


def test_an_unknown_path_is_one_series_not_one_per_path(
    service: ServiceProcess, auditor: str
) -> None:
    for n in range(3):
        httpx.get(f"{service.url}/no-such-page-{n}")
    text = scrape(service, auditor)
    assert "no-such-page" not in text
    assert (
        value(
            text,
            "signoff_http_request_duration_seconds_count",
            method="GET",
            route="unmatched",
            status="404",
        )
        >= 3
    )


@pytest.mark.anyio
async def test_an_open_event_stream_shows_in_the_subscriber_gauge(
    service: ServiceProcess, auditor: str
) -> None:
    def subscribers() -> float:
        return value(scrape(service, auditor), "signoff_websocket_subscribers")

    before = subscribers()
    async with subscribe(service, auditor) as ws:
        assert (await receive(ws))["type"] == "hello"
        assert subscribers() == before + 1
    deadline = time.monotonic() + 5
    while subscribers() != before:
        assert time.monotonic() < deadline, "the closed socket is still counted"
        await anyio.sleep(0.1)
