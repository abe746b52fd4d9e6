"""A SIEM follows Signoff through signed webhooks: every subscribed event arrives, signed
so the receiver can tell it is Signoff's, in order per request, retried with the same
event id when the receiver stumbles; nothing it did not subscribe to. On SQLite and on
PostgreSQL, against real receivers on loopback ports."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support import ServiceProcess, queue_held_call, service_policy
from webhook_receiver import WebhookReceiver, verify_signature

STORES = ["sqlite", "postgresql"]

SIEM_SECRET = "siem-" + "s" * 32
PAGER_SECRET = "pager-" + "p" * 32


@pytest.fixture(scope="module")
def siem() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(SIEM_SECRET).start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def pager() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(PAGER_SECRET).start()
    yield receiver
    receiver.stop()


def webhook_env(**secrets: str) -> dict[str, str]:
    """Secrets and seconds-long retry timings for a service under test."""
    return {
        **secrets,
        "SIGNOFF_DELIVERY_RETRY_FIRST_SECONDS": "1.1",
        "SIGNOFF_DELIVERY_RETRY_CAP_SECONDS": "2",
        "SIGNOFF_DELIVERY_ATTEMPT_TIMEOUT_SECONDS": "2",
        "SIGNOFF_DELIVERY_POLL_SECONDS": "0.2",
    }


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
    siem: WebhookReceiver,
    pager: WebhookReceiver,
) -> Iterator[ServiceProcess]:
    policy = service_policy() | {
        "webhooks": [
            {
                "url": siem.url,
                "secret_env": "SIEM_SECRET",
                "events": ["request.created", "request.decided"],
            },
            {"url": pager.url, "secret_env": "PAGER_SECRET", "events": ["request.cancelled"]},
        ]
    }
    proc = ServiceProcess(
        tmp_path_factory.mktemp("webhooks") / "signoff.db",
        db_url=database_url,
        policy=policy,
        env=webhook_env(SIEM_SECRET=SIEM_SECRET, PAGER_SECRET=PAGER_SECRET),
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def gateway(service: ServiceProcess) -> httpx.Client:
    return service.client(service.token("gateway", "gw-webhooks"))


@pytest.fixture(scope="module")
def alice(service: ServiceProcess) -> httpx.Client:
    return service.client(service.token("approver", "alice"))


def arrivals_for(receiver: WebhookReceiver, request_id: str) -> list[Any]:
    return [a for a in list(receiver.received) if a.event["request_id"] == request_id]


def test_the_siem_gets_signed_created_and_decided_events_and_the_pager_only_cancels(
    service: ServiceProcess,
    gateway: httpx.Client,
    alice: httpx.Client,
    siem: WebhookReceiver,
    pager: WebhookReceiver,
) -> None:
    request = queue_held_call(gateway)
    decided = alice.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
    assert decided.status_code == 200

    events = siem.wait_for(
        lambda: len(got := [a.event for a in arrivals_for(siem, request["id"])]) >= 2 and got
    )
    assert [e["type"] for e in events] == ["request.created", "request.decided"]
    assert all(a.verified and a.answered == 200 for a in arrivals_for(siem, request["id"]))
    created, settled = events
    assert set(created) == {"event_id", "type", "created_at", "request_id", "request"}
    assert created["request"]["status"] == "pending"
    assert settled["request"]["status"] == "approved"
    assert settled["request"]["decided_by"] == "alice"
    assert created["event_id"] != settled["event_id"]

    # The pager subscribed to cancellations only: it hears of this request when the
    # gateway cancels another one, never of the creation or the decision.
    other = queue_held_call(gateway)
    assert gateway.post(f"/requests/{other['id']}/cancel").status_code == 200
    cancelled = pager.wait_for(lambda: arrivals_for(pager, other["id"]))
    assert [a.event["type"] for a in cancelled] == ["request.cancelled"]
    assert cancelled[0].verified
    assert arrivals_for(pager, request["id"]) == []
    assert [a.event["type"] for a in arrivals_for(siem, other["id"])] == ["request.created"]


def test_a_signature_checked_with_another_secret_fails(
    gateway: httpx.Client, siem: WebhookReceiver
) -> None:
    request = queue_held_call(gateway)
    [arrival] = siem.wait_for(lambda: arrivals_for(siem, request["id"]))
    assert verify_signature(arrival.header, arrival.body, SIEM_SECRET)
    assert not verify_signature(arrival.header, arrival.body, PAGER_SECRET)
    assert not verify_signature(arrival.header, arrival.body, SIEM_SECRET[:-1])
    # One changed byte of the body, or a shifted timestamp, breaks it as well.
    assert not verify_signature(arrival.header, arrival.body.replace(b"pending", b"approved"),
                                SIEM_SECRET)  # fmt: skip
    shifted = arrival.header.replace(f"t={arrival.timestamp}", f"t={arrival.timestamp + 1}")
    assert not verify_signature(shifted, arrival.body, SIEM_SECRET)
    # The header is HMAC-SHA256 over f"{t}.{body}", lowercase hex.
    expected = hmac.new(
        SIEM_SECRET.encode(), f"{arrival.timestamp}.".encode() + arrival.body, hashlib.sha256
    ).hexdigest()
    assert arrival.header == f"t={arrival.timestamp},v1={expected}"


def test_a_stumbling_receiver_gets_the_same_event_again_signed_afresh_and_in_order(
    gateway: httpx.Client, alice: httpx.Client, siem: WebhookReceiver
) -> None:
    siem.fail_next = 2
    request = queue_held_call(gateway)
    # Decided while the creation is still being retried: it must wait its turn.
    assert (
        alice.post(f"/requests/{request['id']}/decisions", json={"decision": "reject"}).status_code
        == 200
    )
    siem.wait_for(lambda: len([a for a in arrivals_for(siem, request["id"]) if a.answered == 200])
                  == 2)  # fmt: skip
    arrivals = arrivals_for(siem, request["id"])
    assert [(a.event["type"], a.answered) for a in arrivals] == [
        ("request.created", 503),
        ("request.created", 503),
        ("request.created", 200),
        ("request.decided", 200),
    ]
    tries = arrivals[:3]
    assert len({a.event["event_id"] for a in tries}) == 1
    assert len({a.body for a in tries}) == 1
    # Each attempt is signed when it is sent: the timestamps move on, the signatures differ.
    assert tries[0].timestamp < tries[1].timestamp < tries[2].timestamp
    assert len({a.header for a in tries}) == 3
    assert all(a.verified for a in arrivals)
    # The first retry came within 2 s of the first attempt.
    assert tries[1].at - tries[0].at < 2.5


def test_deliveries_are_listed_for_admins_with_their_attempts(
    service: ServiceProcess, gateway: httpx.Client, siem: WebhookReceiver
) -> None:
    siem.fail_next = 1
    request = queue_held_call(gateway)
    siem.wait_for(lambda: [a for a in arrivals_for(siem, request["id"]) if a.answered == 200])
    admin = service.client(service.token("admin", f"admin-{service.port}"))

    def listed() -> list[dict[str, Any]]:
        page = admin.get("/deliveries", params={"request_id": request["id"]})
        assert page.status_code == 200
        items: list[dict[str, Any]] = page.json()["items"]
        return items if items and items[0]["status"] == "delivered" else []

    [row] = siem.wait_for(listed)
    assert row["channel"] == "webhook" and row["target"] == siem.url
    assert row["attempts"] == 2 and row["next_attempt_at"] is None
    assert row["event_id"] == arrivals_for(siem, request["id"])[0].event["event_id"]
    assert row["last_error"] == "the receiver answered HTTP 503"
    metrics = httpx.get(
        f"{service.url}/metrics",
        headers={"Authorization": f"Bearer {service.token('auditor', f'prom-{service.port}')}"},
    ).text
    assert 'signoff_deliveries_total{channel="webhook",outcome="retried"}' in metrics
    assert 'signoff_deliveries_total{channel="webhook",outcome="delivered"}' in metrics
    assert 'signoff_outbox_deliveries{channel="webhook",status="delivered"}' in metrics


def test_only_admins_see_deliveries(service: ServiceProcess) -> None:
    for role in ("approver", "auditor", "gateway"):
        client = service.client(service.token(role, f"nosy-{role}-{service.port}"))
        answer = client.get("/deliveries", params={"status": "failed"})
        assert answer.status_code == 403, role
        assert answer.json()["error"]["code"]
    assert service.client().get("/deliveries").status_code == 401
    admin = service.client(service.token("admin", f"admin-q-{service.port}"))
    for params in (
        {"status": "lost"},
        {"cursor": "abc"},
        {"cursor": "1' OR '1'='1"},
        {"limit": "0"},
        {"limit": "100000"},
        {"channel": "x" * 100},
    ):
        answer = admin.get("/deliveries", params=params)
        assert answer.status_code == 422, params
        assert answer.json()["error"]["code"]
