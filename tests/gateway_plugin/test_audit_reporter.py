"""The gateway reports the calls it settles itself to the audit log, without ever slowing them.

`ApprovalGate.screen()` with a real `AuditReporter` against a real service process.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
import pytest
from support import free_port

from gateway_plugin.audit_reporter import AuditReporter
from gateway_plugin.gate import ApprovalGate, ToolCall
from gateway_plugin.policy import parse_policy
from gateway_plugin.service_client import ServiceClient
from gateway_plugin.verdict import Allow, Deny

pytestmark = pytest.mark.anyio

POLICY = {
    "version": "1",
    "default": "deny",
    "hide": ["playwright_console_logs"],
    "tools": {
        "playwright_evaluate": {
            "action": "deny",
            "reason": "arbitrary JS",
            "redact": ["script"],
        },
        "playwright_click": {
            "action": "allow",
            "audit": True,
            "limits": [{"counter": "clicks", "window": "minute", "max": 1}],
        },
        "playwright_*": {"action": "allow"},
    },
}


@pytest.fixture(scope="module")
def tokens(service: Any) -> dict[str, str]:
    return {
        "gateway": service.token("gateway", "gw-audit"),
        "auditor": service.token("auditor", "audit-reader"),
    }


def exported(service: Any, tokens: dict[str, str], caller: str) -> list[dict[str, Any]]:
    with service.client(tokens["auditor"]) as auditor:
        events = auditor.get("/audit/export", params={"format": "json"}).json()
    return [e for e in events if e["caller"] == caller]


def gate_for(service: Any, token: str, reporter: AuditReporter, **kwargs: Any) -> ApprovalGate:
    client = ServiceClient(service.url, token)
    return ApprovalGate(parse_policy(POLICY), client, token=token, audit=reporter, **kwargs)


async def test_refused_calls_reach_the_audit_log_with_masked_arguments(
    service: Any, tokens: dict[str, str]
) -> None:
    reporter = AuditReporter(service.url, tokens["gateway"])
    gate = gate_for(service, tokens["gateway"], reporter)
    agent = "agent-refused"
    denied = gate.screen(
        ToolCall("playwright_evaluate", {"script": "steal()", "tab": 1}, caller=agent)
    )
    hidden = gate.screen(ToolCall("playwright_console_logs", {}, caller=agent))
    clicked = gate.screen(ToolCall("playwright_click", {"selector": "#ok"}, caller=agent))
    limited = gate.screen(ToolCall("playwright_click", {"selector": "#ok"}, caller=agent))
    assert isinstance(clicked, Allow)
    assert all(isinstance(r, Deny) for r in (denied, hidden, limited))
    await reporter.aclose()
    assert (reporter.sent, reporter.dropped) == (4, 0)

    events = exported(service, tokens, agent)
    assert [(e["type"], e["outcome"], e["tool"]) for e in events] == [
        ("policy.denied", "denied", "playwright_evaluate"),
        ("policy.denied", "hidden", "playwright_console_logs"),
        ("call.allowed", "allowed", "playwright_click"),
        ("policy.rate_limited", "rate_limited", "playwright_click"),
    ]
    assert events[0]["arguments"] == {"script": "***", "tab": 1}
    assert events[0]["policy_key"] == "playwright_evaluate"
    assert events[0]["comment"] == "arbitrary JS"
    assert "counter 'clicks' allows 1 calls per minute" in events[3]["comment"]
    assert {(e["actor"], e["channel"]) for e in events} == {("gw-audit", "gateway")}


async def test_allowed_calls_are_recorded_only_when_asked(
    service: Any, tokens: dict[str, str]
) -> None:
    quiet = AuditReporter(service.url, tokens["gateway"])
    gate = gate_for(service, tokens["gateway"], quiet)
    assert gate.screen(ToolCall("playwright_navigate", {}, caller="agent-quiet")) == Allow()
    await quiet.aclose()
    assert quiet.sent == 0 and exported(service, tokens, "agent-quiet") == []

    loud = AuditReporter(service.url, tokens["gateway"])
    gate = gate_for(service, tokens["gateway"], loud, audit_allowed=True)
    assert (
        gate.screen(ToolCall("playwright_navigate", {"url": "x"}, caller="agent-loud")) == Allow()
    )
    await loud.aclose()
    [event] = exported(service, tokens, "agent-loud")
    assert (event["type"], event["arguments"]) == ("call.allowed", {"url": "x"})


async def test_a_down_service_never_slows_or_fails_a_call(
    service: Any, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    reporter = AuditReporter(dead, tokens["gateway"], attempts=2, first_retry_delay=0.01)
    gate = gate_for(service, tokens["gateway"], reporter)
    call = ToolCall("playwright_evaluate", {"script": "1"}, caller="agent-offline")

    started = time.perf_counter()
    results = [gate.screen(call) for _ in range(200)]
    per_call = (time.perf_counter() - started) / 200
    assert per_call < 0.002, f"{per_call * 1e6:.0f} µs per refused call"
    assert all(isinstance(r, Deny) for r in results)

    with caplog.at_level(logging.WARNING, logger="gateway_plugin.audit_reporter"):
        with anyio.fail_after(10):
            await reporter.flush()
    assert (reporter.sent, reporter.dropped, reporter.pending) == (0, 200, 0)
    assert "dropped 200 audit fact(s): the approval service could not be reached" in caplog.text
    await reporter.aclose()


def test_a_full_queue_drops_new_facts_with_a_warning(
    service: Any, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    reporter = AuditReporter(service.url, tokens["gateway"], max_queue=3)
    with caplog.at_level(logging.WARNING, logger="gateway_plugin.audit_reporter"):
        for i in range(5):  # no event loop running: the facts wait in the queue
            reporter.report("policy.denied", tool="t", caller=f"agent-full-{i}")
    assert (reporter.pending, reporter.dropped) == (3, 2)
    assert "the audit queue is full" in caplog.text

    anyio.run(reporter.aclose)
    assert reporter.sent == 3
    assert len(exported(service, tokens, "agent-full-2")) == 1
    assert exported(service, tokens, "agent-full-4") == []


def test_the_policy_audit_key_is_a_strict_boolean_shown_by_explain() -> None:
    from gateway_plugin.policy import PolicyError

    policy = parse_policy(POLICY)
    assert policy.evaluate("playwright_click", {}).audit is True
    assert policy.evaluate("playwright_navigate", {}).audit is False
    explained = policy.explain("playwright_click", {})
    assert "audit: allowed calls are recorded in the audit log" in explained.trace

    broken = {**POLICY, "tools": {"playwright_click": {"action": "allow", "audit": "yes"}}}
    with pytest.raises(PolicyError, match="audit"):
        parse_policy(broken)
