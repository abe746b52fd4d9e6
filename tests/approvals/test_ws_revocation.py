"""Who may keep listening on WS /api/v1/events: a revoked token is cut off within seconds,
agents and unknown roles never get in, and a gateway hears only about its own requests."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator

import anyio
import pytest
from support import ServiceProcess, dashboard_sign_in, queue_held_call
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol
from ws_support import closed_with, events_url, receive, subscribe

from approvals import token_admin
from approvals.db import make_engine, session_scope
from approvals.models import ApiToken, utcnow
from approvals.tokens import TOKEN_PREFIX, hash_token

pytestmark = pytest.mark.anyio

# The revocation watcher reads the token table on both stores.
STORES = ("sqlite", "postgresql")

REVOCATION_DEADLINE_SECONDS = 5.0


def revoke(service: ServiceProcess, name: str) -> None:
    """Revoke `name`'s token from outside the service, as `signoff tokens revoke NAME` does."""
    engine = make_engine(service.db_url)
    try:
        with session_scope(engine) as session:
            assert len(token_admin.revoke(session, name)) == 1
    finally:
        engine.dispose()


async def heard_until(ws: ClientConnection, last_id: str) -> list[tuple[str, str]]:
    """(event type, request id) of every event `ws` hears, up to the one about `last_id`."""
    heard: list[tuple[str, str]] = []
    with anyio.fail_after(5):
        while not heard or heard[-1][1] != last_id:
            message = json.loads(await ws.recv())
            if "request_id" in message:
                heard.append((message["type"], message["request_id"]))
    return heard


async def test_a_revoked_tokens_socket_closes_with_1008_within_5_seconds(
    service: ServiceProcess,
) -> None:
    token = service.token("approver", "rita")
    async with subscribe(service, token) as ws:
        assert (await receive(ws))["type"] == "hello"
        with service.client(token) as rita:  # the token is now in the service's cache
            assert rita.get("/whoami").status_code == 200

        revoked_at = time.monotonic()
        revoke(service, "rita")
        code, reason = await closed_with(ws, timeout=REVOCATION_DEADLINE_SECONDS)
        assert code == 1008 and "revoked" in reason
        assert time.monotonic() - revoked_at < REVOCATION_DEADLINE_SECONDS

    # The cache forgot it too: the token is refused at once, not after its cache entry ages.
    with service.client(token) as rita:
        assert rita.get("/whoami").status_code == 401
    async with subscribe(service, token) as again:
        assert (await closed_with(again))[0] == 1008


async def test_every_socket_of_the_revoked_token_closes_and_no_other(
    service: ServiceProcess,
) -> None:
    token = service.token("auditor", "otto")
    other = service.token("auditor", "olga")
    gateway = service.client(service.token("gateway", "gw-otto"))
    url = events_url(service)
    async with (
        subscribe(service, token) as by_header,
        connect(url, subprotocols=[Subprotocol("bearer"), Subprotocol(token)]) as by_subprotocol,
        connect(url) as by_message,
        subscribe(service, other) as bystander,
    ):
        await by_message.send(json.dumps({"type": "auth", "token": token}))
        for ws in (by_header, by_subprotocol, by_message, bystander):
            assert (await receive(ws))["type"] == "hello"

        revoke(service, "otto")
        for ws in (by_header, by_subprotocol, by_message):
            assert (await closed_with(ws, timeout=REVOCATION_DEADLINE_SECONDS))[0] == 1008

        created = queue_held_call(gateway)
        assert (await heard_until(bystander, created["id"]))[-1] == (
            "request.created",
            created["id"],
        )


async def test_a_dashboard_socket_closes_when_the_token_it_signed_in_with_is_revoked(
    service: ServiceProcess,
) -> None:
    signed_in = dashboard_sign_in(service, service.token("approver", "dora"))
    cookie = signed_in.http.cookies["signoff_session"]
    async with connect(
        events_url(service, f"?csrf={signed_in.csrf}"),
        additional_headers={"Cookie": f"signoff_session={cookie}"},
    ) as ws:
        assert (await receive(ws))["name"] == "dora"
        revoke(service, "dora")
        code, reason = await closed_with(ws, timeout=REVOCATION_DEADLINE_SECONDS)
    assert code == 1008 and "revoked" in reason


@pytest.mark.parametrize("how", ["header", "first message"])
async def test_an_agent_token_may_not_subscribe(service: ServiceProcess, how: str) -> None:
    token = service.token("agent", f"agent-by-{how.replace(' ', '-')}")
    socket = subscribe(service, token) if how == "header" else connect(events_url(service))
    async with socket as ws:
        if how == "first message":
            await ws.send(json.dumps({"type": "auth", "token": token}))
        code, reason = await closed_with(ws)
    assert code == 1008 and "agent" in reason


async def test_a_token_of_a_role_this_version_does_not_know_may_not_subscribe(
    service: ServiceProcess,
) -> None:
    # As a newer version (or a hand edit) might have written it.
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    engine = make_engine(service.db_url)
    try:
        with session_scope(engine) as session:
            session.add(
                ApiToken(
                    name="from-the-future",
                    role="operator",
                    token_hash=hash_token(secret),
                    prefix=secret[:10],
                    created_at=utcnow(),
                )
            )
            session.commit()
    finally:
        engine.dispose()
    async with subscribe(service, secret) as ws:
        code, reason = await closed_with(ws)
    assert code == 1008 and "operator" in reason


async def test_a_gateway_hears_only_about_the_requests_it_created(
    service: ServiceProcess,
) -> None:
    north_token = service.token("gateway", "gw-north")
    north = service.client(north_token)
    south = service.client(service.token("gateway", "gw-south"))
    async with (
        subscribe(service, north_token) as north_ws,
        subscribe(service, service.token("approver", "vera")) as approver_ws,
    ):
        for ws in (north_ws, approver_ws):
            assert (await receive(ws))["type"] == "hello"
        theirs = queue_held_call(south)
        south.post(f"/requests/{theirs['id']}/cancel")
        mine = queue_held_call(north)
        created_event = json.loads(await north_ws.recv())

        assert created_event["request"]["gateway"] == "gw-north"
        assert created_event["request_id"] == mine["id"]  # south's two events never came
        assert await heard_until(approver_ws, mine["id"]) == [
            ("request.created", theirs["id"]),
            ("request.cancelled", theirs["id"]),
            ("request.created", mine["id"]),
        ]


# --- dashboard sign-ins that end while their socket is open --------------------------------


@pytest.fixture(scope="module")
def short_sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    # A dashboard sign-in lasts 0.0015 h = 5.4 s here.
    proc = ServiceProcess(
        tmp_path_factory.mktemp("short") / "signoff.db", env={"SIGNOFF_SESSION_HOURS": "0.0015"}
    )
    proc.start()
    yield proc
    proc.stop()


async def test_a_dashboard_socket_closes_when_its_sign_in_expires(
    short_sessions: ServiceProcess,
) -> None:
    signed_in = dashboard_sign_in(short_sessions, short_sessions.token("auditor", "ivy"))
    cookie = signed_in.http.cookies["signoff_session"]
    opened = time.monotonic()
    async with connect(
        events_url(short_sessions, f"?csrf={signed_in.csrf}"),
        additional_headers={"Cookie": f"signoff_session={cookie}"},
    ) as ws:
        assert (await receive(ws))["name"] == "ivy"
        code, reason = await closed_with(ws, timeout=10)
    assert code == 1008 and "expired" in reason
    assert 3 < time.monotonic() - opened < 5.4 + 3
