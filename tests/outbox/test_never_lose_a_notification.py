"""An operator's service is killed (SIGKILL: no shutdown at all) after it committed changes
but before their notifications went out; once restarted it delivers them, in order, with
the event ids they had. A receiver that hangs never slows a decision. What is given up
on is listed for admins. Real service processes, real receivers, SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import ROOT, ServiceProcess, queue_held_call, service_policy
from webhook_receiver import WebhookReceiver

STORES = ["sqlite", "postgresql"]
SECRET = "crash-test-secret-" + "c" * 20


def hooked_policy(receiver: WebhookReceiver, base: dict[str, Any] | None = None) -> dict[str, Any]:
    return (base or service_policy()) | {
        "webhooks": [
            {
                "url": receiver.url,
                "secret_env": "HOOK_SECRET",
                "events": ["request.created", "request.decided", "request.cancelled"],
            }
        ]
    }


def env(**extra: str) -> dict[str, str]:
    return {
        "HOOK_SECRET": SECRET,
        "SIGNOFF_DELIVERY_RETRY_FIRST_SECONDS": "0.5",
        "SIGNOFF_DELIVERY_RETRY_CAP_SECONDS": "1",
        "SIGNOFF_DELIVERY_ATTEMPT_TIMEOUT_SECONDS": "2",
        "SIGNOFF_DELIVERY_POLL_SECONDS": "0.2",
        "SIGNOFF_DELIVERY_LEASE_SECONDS": "2",
        **extra,
    }


def deliveries(admin: httpx.Client, **params: str) -> list[dict[str, Any]]:
    answer = admin.get("/deliveries", params=params)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def until(condition: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver(SECRET)  # not started: nothing listens on its port yet
    yield hook
    hook.stop()


def test_sigkill_after_the_commit_loses_no_webhook(
    tmp_path: Path, database_url: str | None, receiver: WebhookReceiver
) -> None:
    service = ServiceProcess(
        tmp_path / "signoff.db", db_url=database_url, policy=hooked_policy(receiver), env=env()
    )
    service.start()
    try:
        gateway = service.client(service.token("gateway", "gw-crash"))
        alice = service.client(service.token("approver", "alice"))
        admin = service.client(service.token("admin", "ops"))
        request = queue_held_call(gateway)
        approved = alice.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
        assert approved.status_code == 200
        # Committed, and tried at least once against a receiver that is not there.
        queued = until(
            lambda: (
                (rows := deliveries(admin, request_id=request["id"]))
                and len(rows) == 2
                and rows[-1]["attempts"] >= 1
                and rows
            )
        )
        assert {d["status"] for d in queued} == {"pending"}
        event_ids = [d["event_id"] for d in reversed(queued)]  # the list is newest first
        service.kill()

        receiver.start()
        service.start()
        got = receiver.wait_for(lambda: len(receiver.accepted()) >= 2 and receiver.accepted())
        assert [e["type"] for e in got] == ["request.created", "request.decided"]
        assert [e["event_id"] for e in got] == event_ids
        assert all(a.verified for a in receiver.received)
        admin = service.client(service.token("admin", "ops-after"))
        until(
            lambda: (
                {d["status"] for d in deliveries(admin, request_id=request["id"])} == {"delivered"}
            )
        )
    finally:
        service.stop()


def test_a_hanging_receiver_never_slows_decisions(
    tmp_path: Path, database_url: str | None, receiver: WebhookReceiver
) -> None:
    receiver.hang = True
    receiver.start()
    service = ServiceProcess(
        tmp_path / "signoff.db",
        db_url=database_url,
        policy=hooked_policy(receiver),
        env=env(SIGNOFF_DELIVERY_ATTEMPT_TIMEOUT_SECONDS="10"),
    )
    service.start()
    try:
        gateway = service.client(service.token("gateway", "gw-hang"))
        alice = service.client(service.token("approver", "alice"))
        queue_held_call(gateway)
        receiver.wait_for(lambda: receiver.received)  # the receiver now holds a delivery
        slowest = 0.0
        for _ in range(10):
            started = time.monotonic()
            request = queue_held_call(gateway)
            decided = alice.post(
                f"/requests/{request['id']}/decisions", json={"decision": "approve"}
            )
            assert decided.status_code == 200
            slowest = max(slowest, time.monotonic() - started)
        # Every decision answered while the receiver still hung (10 s per attempt).
        assert slowest < 2.0
        assert all(a.answered == 0 for a in receiver.received)
    finally:
        receiver.release()
        service.stop()


def test_a_delivery_given_up_on_is_listed_as_failed_and_the_next_event_follows(
    tmp_path: Path, database_url: str | None, receiver: WebhookReceiver
) -> None:
    receiver.fail_next = 1_000_000
    receiver.start()
    service = ServiceProcess(
        tmp_path / "signoff.db",
        db_url=database_url,
        policy=hooked_policy(receiver),
        env=env(SIGNOFF_DELIVERY_GIVE_UP_SECONDS="2"),
    )
    service.start()
    try:
        gateway = service.client(service.token("gateway", "gw-giveup"))
        admin_token = service.token("admin", "ops")
        admin = service.client(admin_token)
        request = queue_held_call(gateway)
        # (On PostgreSQL the module's database also holds the earlier stories' rows.)
        [failed] = until(lambda: deliveries(admin, status="failed", request_id=request["id"]))
        assert failed["request_id"] == request["id"]
        assert failed["event_type"] == "request.created"
        assert failed["last_error"] == "the receiver answered HTTP 503"
        assert failed["attempts"] >= 2
        # The receiver recovers: the request's next event is not held back by the failure.
        receiver.fail_next = 0
        assert gateway.post(f"/requests/{request['id']}/cancel").status_code == 200
        got = receiver.wait_for(lambda: receiver.accepted())
        assert [e["type"] for e in got] == ["request.cancelled"]

        cli = run_cli(
            service, admin_token, "deliveries", "list", "--status", "failed",
            "--request", request["id"],
        )  # fmt: skip
        assert cli.returncode == 0, cli.stderr
        lines = cli.stdout.strip().splitlines()
        assert lines[0].split()[:6] == ["EVENT", "CHANNEL", "TYPE", "REQUEST", "STATUS", "TRIES"]
        [row] = lines[1:]
        assert failed["event_id"] in row and "failed" in row and "HTTP 503" in row

        approver = service.token("approver", "alice")
        refused = run_cli(service, approver, "deliveries", "list")
        assert refused.returncode == 2
        assert len(refused.stderr.strip().splitlines()) == 1
        assert "403" in refused.stderr and "Traceback" not in refused.stderr
    finally:
        service.stop()


def run_cli(service: ServiceProcess, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ, SIGNOFF_SERVICE_URL=service.url, SIGNOFF_TOKEN=token)
    return subprocess.run(
        [sys.executable, "-m", "approvals.cli.main", *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=ROOT,
        timeout=60,
    )
