"""An operator reads the service's log: ISO-8601 UTC timestamps and levels, or JSON lines
(--log-format json / SIGNOFF_LOG_FORMAT=json); one INFO line for each request created,
decided, expired, claimed and cancelled; and never a token, not even one a client put in
a URL."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import ServiceProcess, queue_held_call

from approvals.logs import scrub

TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+ "
)


def serve(tmp_path: Path, log_format: str | None) -> ServiceProcess:
    env = {} if log_format is None else {"SIGNOFF_LOG_FORMAT": log_format}
    proc = ServiceProcess(tmp_path / "signoff.db", env=env, log_level="info")
    proc.start()
    return proc


@pytest.fixture
def text_service(tmp_path: Path) -> Iterator[ServiceProcess]:
    proc = serve(tmp_path, None)
    yield proc
    proc.stop()


@pytest.fixture
def json_service(tmp_path: Path) -> Iterator[ServiceProcess]:
    proc = serve(tmp_path, "json")
    yield proc
    proc.stop()


def lifecycle_story(service: ServiceProcess) -> dict[str, str]:
    """Create, decide, claim, cancel and expire one request each; returns their ids."""
    gateway = service.client(service.token("gateway", "gw-logs"))
    approver = service.client(service.token("approver", "alice"))
    decided = queue_held_call(gateway)
    assert approver.post(
        f"/requests/{decided['id']}/decisions", json={"decision": "approve"}
    ).is_success
    assert gateway.post(f"/requests/{decided['id']}/claim").is_success
    cancelled = queue_held_call(gateway)
    assert gateway.post(f"/requests/{cancelled['id']}/cancel").is_success
    expired = queue_held_call(gateway, timeout_seconds=0.3)
    deadline = time.monotonic() + 10
    while gateway.get(f"/requests/{expired['id']}").json()["status"] == "pending":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return {"decided": decided["id"], "cancelled": cancelled["id"], "expired": expired["id"]}


def log_lines(service: ServiceProcess, wait_for: str) -> list[str]:
    deadline = time.monotonic() + 5
    while True:
        text = service.log_path.read_text()
        if wait_for in text or time.monotonic() > deadline:
            return [line for line in text.splitlines() if line.strip()]
        time.sleep(0.1)


def test_text_lines_carry_a_utc_timestamp_a_level_and_one_line_per_change(
    text_service: ServiceProcess,
) -> None:
    ids = lifecycle_story(text_service)
    lines = log_lines(text_service, f"request {ids['expired']} expired")
    ours = [line for line in lines if " approvals." in line or " uvicorn." in line]
    assert ours and all(TEXT_LINE.match(line) for line in ours), ours[:5]

    lifecycle = [line for line in lines if " INFO approvals.lifecycle " in line]

    def about(request_id: str, what: str) -> list[str]:
        return [line for line in lifecycle if f"request {request_id} {what}" in line]

    assert len(about(ids["decided"], "created")) == 1
    assert len(about(ids["decided"], "approved by alice")) == 1
    assert len(about(ids["decided"], "claimed by gw-logs")) == 1
    assert len(about(ids["cancelled"], "cancelled by gw-logs")) == 1
    assert len(about(ids["expired"], "expired")) == 1


def test_json_lines_carry_the_requests_facts(json_service: ServiceProcess) -> None:
    ids = lifecycle_story(json_service)
    lines = log_lines(json_service, ids["expired"] + " expired")
    entries = [json.loads(line) for line in lines]  # every line is JSON
    assert all({"ts", "level", "logger", "message"} <= set(e) for e in entries)
    assert all(e["ts"].endswith("Z") for e in entries)
    facts = [e for e in entries if e.get("request_id") == ids["decided"]]
    by_message = {e["message"].split(":")[0]: e for e in facts}
    created = next(e for m, e in by_message.items() if m.endswith("created"))
    assert created["tool"] == "end_codegen_session" and created["caller"] == "agent-7"
    approved = next(e for e in facts if e.get("decision") == "approved")
    assert approved["actor"] == "alice" and approved["channel"] == "api"
    assert approved["level"] == "INFO" and approved["logger"] == "approvals.lifecycle"


def test_no_token_reaches_the_log_not_even_from_a_url(text_service: ServiceProcess) -> None:
    secret = text_service.token("auditor", "audrey")
    # A client that puts the token in the query string (as browsers' websockets do).
    httpx.get(f"{text_service.url}/api/v1/whoami?token={secret}")
    httpx.get(f"{text_service.url}/api/v1/whoami?x=1&access_token={secret}")
    httpx.get(f"{text_service.url}/metrics", headers={"Authorization": f"Bearer {secret}"})
    # A bad token that is logged nowhere either.
    httpx.get(f"{text_service.url}/nowhere/{secret}")
    text = "\n".join(log_lines(text_service, "/nowhere/"))
    assert "GET /api/v1/whoami?token=[redacted]" in text  # the access log is there...
    assert secret not in text and secret[3:] not in text  # ...without the secret


@pytest.mark.parametrize(
    "line",
    [
        "GET /api/v1/events?token=so_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG HTTP/1.1",
        "Authorization: Bearer so_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "failed for so_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG!",
        "Authorization: Bearer someone-elses-format-entirely",
        "ws://host/events?x=1&token=not-even-ours",
    ],
)
def test_scrub_masks_every_token_shape(line: str) -> None:
    masked = scrub(line)
    assert "[redacted]" in masked
    assert "so_abcdefghijklmnopqrstuvwxyz" not in masked
    assert "someone-elses" not in masked and "not-even-ours" not in masked
