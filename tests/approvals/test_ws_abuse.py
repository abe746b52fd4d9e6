"""Abusive websocket clients cost the service little and nothing lasting: failed logins never
wait for the database's writer, silent sockets are shown out after the auth timeout, a client
that stops reading is let go, and bad tokens grow no cache. (bench/ws_abuse.py measures the
same at scale.)"""

from __future__ import annotations

import json
import secrets
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from support import ServiceProcess, dashboard_sign_in, held_call_body
from websockets.asyncio.client import connect
from ws_support import closed_with, events_url, raw_subscriber, receive, subscribe

from approvals import migrate
from approvals.api.events import AUTH_TIMEOUT_SECONDS, SEND_STALL_SECONDS
from approvals.db import WriteTurn, make_engine, session_scope
from approvals.tokens import TOKEN_PREFIX, TokenCache, create_token

pytestmark = pytest.mark.anyio

PROMPTLY = 2.0  # seconds; a login that queued behind the writer would wait for as long as it holds


def bad_token() -> str:
    """A token shaped like ours, so the service has to look it up to refuse it."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@contextmanager
def writer_holding(service: ServiceProcess) -> Iterator[None]:
    """Another process in the middle of a long write: it holds the write turn (the lock file
    every Signoff writer queues on) and SQLite's own write lock, until the block ends."""
    database = service.db_url.removeprefix("sqlite:///")
    turn = WriteTurn(database)
    turn.acquire()
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        writer.rollback()
        writer.close()
        turn.release()
        turn.close()


async def test_failed_logins_are_refused_promptly_while_a_writer_holds_the_database(
    service: ServiceProcess,
) -> None:
    fresh = service.token("auditor", "fresh-auditor")  # never used: not in any cache yet
    signed_in = dashboard_sign_in(service, service.token("approver", "desk-approver"))
    cookie = signed_in.http.cookies["signoff_session"]
    url = events_url(service)

    with writer_holding(service):
        for attempt in ("header", "query", "first message"):
            started = time.monotonic()
            token = bad_token()
            if attempt == "header":
                opening = subscribe(service, token)
            else:
                opening = connect(url + (f"?token={token}" if attempt == "query" else ""))
            async with opening as ws:
                if attempt == "first message":
                    await ws.send(json.dumps({"type": "auth", "token": token}))
                assert (await closed_with(ws, timeout=PROMPTLY))[0] == 1008
            assert time.monotonic() - started < PROMPTLY, attempt

        async with connect(
            events_url(service, f"?csrf={signed_in.csrf}"),
            additional_headers={"Cookie": "signoff_session=forged.cookie"},
        ) as forged:
            assert (await closed_with(forged, timeout=PROMPTLY))[0] == 1008
        with httpx.Client(base_url=f"{service.url}/api/v1", timeout=PROMPTLY) as http:
            refused = http.get("/whoami", headers={"Authorization": f"Bearer {bad_token()}"})
            assert refused.status_code == 401
        # The dashboard's pages and its sign-in form read without the writer's lock too.
        assert signed_in.http.get("/", timeout=PROMPTLY).status_code == 200
        with httpx.Client(base_url=service.url, timeout=PROMPTLY) as stranger:
            form = stranger.get("/login").text
            login_csrf = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            wrong = stranger.post(
                "/login", data={"token": bad_token(), "csrf_token": login_csrf, "next": "/"}
            )
            assert wrong.status_code == 401

        # Good logins read the token table without the writer's lock as well.
        async with subscribe(service, fresh) as ws:
            assert (await receive(ws, timeout=PROMPTLY))["name"] == "fresh-auditor"
        async with connect(
            events_url(service, f"?csrf={signed_in.csrf}"),
            additional_headers={"Cookie": f"signoff_session={cookie}"},
        ) as ws:
            assert (await receive(ws, timeout=PROMPTLY))["name"] == "desk-approver"


async def test_sockets_that_never_authenticate_are_closed_after_the_auth_timeout(
    service: ServiceProcess,
) -> None:
    opened = time.monotonic()
    closed_after: list[float] = []

    async def stay_silent() -> None:
        async with connect(events_url(service)) as ws:
            code, _ = await closed_with(ws, timeout=AUTH_TIMEOUT_SECONDS + 5)
            assert code == 1008
            closed_after.append(time.monotonic() - opened)

    async with anyio.create_task_group() as silent:
        for _ in range(20):
            silent.start_soon(stay_silent)
        # Meanwhile the service serves everyone else as usual.
        await anyio.sleep(1)
        async with subscribe(service, service.token("approver", "patient")) as ws:
            assert (await receive(ws, timeout=PROMPTLY))["type"] == "hello"
        assert httpx.get(f"{service.url}/healthz", timeout=PROMPTLY).json() == {"status": "ok"}

    assert len(closed_after) == 20
    assert min(closed_after) > AUTH_TIMEOUT_SECONDS - 0.5
    assert max(closed_after) < AUTH_TIMEOUT_SECONDS + 4


async def test_a_client_that_stops_reading_is_let_go_after_its_sends_stall(
    service: ServiceProcess,
) -> None:
    gateway = service.client(service.token("gateway", "gw-bulk"))
    reader_token = service.token("approver", "stalled-reader")
    stuck = raw_subscriber(service, reader_token)
    async with subscribe(service, service.token("approver", "live-reader")) as live:
        await receive(live)
        # ~8 MB of events: more than the kernel's buffers plus the 64 KiB the service lets a
        # socket hold, but far fewer events than the client's queue holds: only the stalled
        # send can tell that this client is gone.
        for n in range(16):
            body = held_call_body(arguments={"blob": "x" * 500_000, "n": n})
            created = gateway.post("/requests", json=body)
            assert created.status_code == 201, created.text
            with anyio.fail_after(PROMPTLY):  # the stuck client slows nobody down
                while json.loads(await live.recv()).get("request_id") != created.json()["id"]:
                    pass

    # Give the service the stall timeout and its close attempt, then read again: the service
    # has ended the connection, so what it had buffered drains and the stream ends.
    await anyio.sleep(SEND_STALL_SECONDS + 3)
    received = _drain(stuck, within=10)
    assert received.startswith(b"HTTP/1.1 101")


def _drain(sock: socket.socket, *, within: float) -> bytes:
    """Everything `sock` receives until the service closes it (fails after `within` s)."""
    received = b""
    deadline = time.monotonic() + within
    sock.settimeout(1)
    try:
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                continue
            if not chunk:
                return received
            received += chunk
    finally:
        sock.close()
    raise AssertionError(f"the service still holds the connection ({len(received)} bytes read)")


def test_a_flood_of_bad_tokens_leaves_the_token_cache_as_it_was(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            _, good = create_token(session, name="regular", role="approver")
        cache = TokenCache()
        assert cache.lookup(engine, good) == ("regular", "approver")

        for n in range(2000):
            # Half are shaped like ours (a read each), half are not (no read at all).
            assert cache.lookup(engine, bad_token() if n % 2 else f"junk-{n}") is None
        assert len(cache) == 1
        assert cache.cached(good) == ("regular", "approver")
    finally:
        engine.dispose()
