"""WS /api/v1/events: the live stream of request events.

Authentication, any one of (checked in this order):

- `Authorization: Bearer <token>` header (gateways, scripts);
- `Sec-WebSocket-Protocol: bearer, <token>` (browsers cannot set headers; the
  server answers with the `bearer` subprotocol);
- `?token=<token>` in the URL (last resort: URLs end up in logs);
- the dashboard's session cookie together with `?csrf=<the page's CSRF token>`;
- none of those: the first message must be `{"type": "auth", "token": "<token>"}`
  within 10 seconds.

Roles gateway, approver, auditor and admin may subscribe; a gateway hears only
about the requests it created (the request's `gateway`), the others hear about
every request. A socket without valid credentials, or with a token of another
role (agent), is closed with 1008 (policy violation). So is an open socket whose
token is revoked (within seconds: approvals/revocations.py), or whose dashboard
sign-in expires.

Server messages are JSON objects:

- `{"type": "hello", "name": ..., "role": ..., "heartbeat_seconds": 15}` once
  subscribed: everything after it is delivered, so resync from
  `GET /api/v1/requests?status=pending` now;
- events: `{"type": "request.created" | "request.decided" | "request.expired" |
  "request.cancelled", "request_id": ..., "at": ..., "request": {...}}` with the
  same request fields as the REST API (`request.decided` also reports a vote
  that did not yet reach the quorum: check `request.status`);
- `{"type": "ping", "at": ...}` after `heartbeat_seconds` without traffic.

Clients may send `{"type": "ping"}` (answered with `{"type": "pong"}`). A client
that falls more than `SIGNOFF_WS_QUEUE_SIZE` events behind, or that takes no
message for `SEND_STALL_SECONDS`, is closed with code 4000 ("resync"):
reconnect, then resync from the REST list.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass

from fastapi import APIRouter, WebSocket
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from starlette.websockets import WebSocketDisconnect, WebSocketState

from approvals.dashboard.auth import DASHBOARD_ROLES, SESSION_COOKIE, Signer
from approvals.db import read_session
from approvals.live_events import EventHub, Subscriber
from approvals.models import ApiToken, Role, utcnow
from approvals.settings import Settings
from approvals.tokens import TokenCache, hash_token, plausible_token

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1")

CLOSE_POLICY_VIOLATION = 1008
CLOSE_RESYNC = 4000
AUTH_TIMEOUT_SECONDS = 10.0
# A client that cannot take one message in this long has stopped reading. Each send
# waits until the socket's write buffer is below its high-water mark (64 KiB), so
# a stalled client holds at most that plus one message until it is dropped.
SEND_STALL_SECONDS = 10.0
_CLOSE_TIMEOUT_SECONDS = 2.0
# Listed, not derived from Role: a role added later (as `agent` was) stays out
# until someone decides it may listen.
STREAM_ROLES = frozenset(r.value for r in (Role.GATEWAY, Role.APPROVER, Role.AUDITOR, Role.ADMIN))


@dataclass(frozen=True)
class Listener:
    """Who a socket speaks for, and what authorised it (to end it when that ends)."""

    name: str
    role: str
    token_hash: str
    # Epoch seconds at which a dashboard sign-in ends; API tokens do not expire.
    expires_at: float | None = None


async def _token_listener(websocket: WebSocket, engine: Engine, token: str) -> Listener | None:
    token = token.strip()
    # Garbage costs no thread and no read; a good token seen lately costs neither.
    if not plausible_token(token):
        return None
    cache: TokenCache = websocket.app.state.token_cache
    found = cache.cached(token)
    if found is None:
        # A read-only session: failed logins never queue for (or hold) the write turn.
        found = await run_in_threadpool(cache.lookup, engine, token)
    if found is None or websocket.app.state.revocations.is_expired(token):
        return None
    return Listener(found[0], found[1], hash_token(token))


def _session_listener(engine: Engine, token_id: int, expires_at: int) -> Listener | None:
    """The dashboard sign-in's person, if the token it was made from is still live."""
    with read_session(engine) as session:
        row = session.exec(
            select(ApiToken).where(ApiToken.id == token_id, col(ApiToken.revoked_at).is_(None))
        ).first()
    if row is None or row.role not in DASHBOARD_ROLES:
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    return Listener(row.name, row.role, row.token_hash, float(expires_at))


def _signed_in(signer: Signer, cookie: str, csrf: str | None) -> tuple[int, int] | None:
    """(token id, expiry) of a session cookie that comes with its page's CSRF token."""
    try:
        verified = signer.verify(cookie)
        # The CSRF token proves the page is ours: cookies alone would let any
        # site a signed-in person visits open this socket in their name.
        if verified is None or not signer.check_csrf(verified[2], csrf):
            return None
    except (TypeError, ValueError):  # hmac refuses non-ASCII text: not ours either
        return None
    return verified[0], verified[1]


def _handshake_token(websocket: WebSocket) -> tuple[str | None, str | None]:
    """(token, subprotocol to answer with) from the header, subprotocol or query."""
    offered = [p.strip() for p in websocket.scope.get("subprotocols") or []]
    subprotocol = "bearer" if offered and offered[0].lower() == "bearer" else None
    scheme, _, value = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), subprotocol
    if subprotocol is not None and len(offered) > 1:
        return offered[1], subprotocol
    query = websocket.query_params.get("token")
    if query:
        return query, subprotocol
    return None, subprotocol


async def _first_message_token(websocket: WebSocket) -> str | None:
    try:
        raw = await asyncio.wait_for(websocket.receive_text(), AUTH_TIMEOUT_SECONDS)
        message = json.loads(raw)
    except (TimeoutError, ValueError, KeyError, RuntimeError, WebSocketDisconnect):
        return None
    if isinstance(message, dict) and message.get("type") == "auth":
        token = message.get("token")
        return token if isinstance(token, str) else None
    return None


async def _identify(websocket: WebSocket, engine: Engine) -> Listener | None:
    token, _ = _handshake_token(websocket)
    if token is not None:
        return await _token_listener(websocket, engine, token)
    signer: Signer | None = getattr(websocket.app.state, "signer", None)
    cookie = websocket.cookies.get(SESSION_COOKIE)
    if signer is not None and cookie:
        signed_in = _signed_in(signer, cookie, websocket.query_params.get("csrf"))
        if signed_in is None:
            return None
        return await run_in_threadpool(_session_listener, engine, *signed_in)
    token = await _first_message_token(websocket)
    if token is None:
        return None
    return await _token_listener(websocket, engine, token)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.client_state == WebSocketState.DISCONNECTED:
        return
    # A client that stopped reading may never let the close frame out: do not wait forever.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code, reason), _CLOSE_TIMEOUT_SECONDS)


@router.websocket("/events")
async def events(websocket: WebSocket) -> None:
    """Stream request events to an authenticated client (see the module docstring)."""
    state = websocket.app.state
    engine: Engine = state.engine
    hub: EventHub = state.hub
    settings: Settings = state.settings
    _, subprotocol = _handshake_token(websocket)
    # Accept first so that a refusal reaches the client as close code 1008.
    await websocket.accept(subprotocol=subprotocol)
    listener = await _identify(websocket, engine)
    if listener is None:
        await _close(websocket, CLOSE_POLICY_VIOLATION, "a valid API token is required")
        return
    if listener.role not in STREAM_ROLES:
        await _close(
            websocket, CLOSE_POLICY_VIOLATION, f"a {listener.role} token may not subscribe"
        )
        return
    subscriber = hub.subscribe(
        gateway=listener.name if listener.role == Role.GATEWAY else None,
        token_hash=listener.token_hash,
        expires_at=listener.expires_at,
    )
    try:
        await _stream(websocket, subscriber, listener, settings.ws_heartbeat_seconds)
    finally:
        hub.unsubscribe(subscriber)


async def _stream(
    websocket: WebSocket, subscriber: Subscriber, listener: Listener, heartbeat: float
) -> None:
    send_lock = asyncio.Lock()

    async def send(text: str) -> None:
        async with send_lock, asyncio.timeout(SEND_STALL_SECONDS):
            await websocket.send_text(text)

    async def pump() -> None:
        await send(
            json.dumps(
                {
                    "type": "hello",
                    "name": listener.name,
                    "role": listener.role,
                    "heartbeat_seconds": heartbeat,
                }
            )
        )
        while True:
            try:
                evt = await asyncio.wait_for(subscriber.queue.get(), heartbeat)
            except TimeoutError:
                await send(json.dumps({"type": "ping", "at": utcnow().isoformat()}))
                continue
            await send(evt.text)

    async def read() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text and '"ping"' in text:
                with contextlib.suppress(ValueError):
                    if json.loads(text).get("type") == "ping":
                        await send('{"type":"pong"}')

    tasks = {
        asyncio.create_task(pump(), name="ws-pump"),
        asyncio.create_task(read(), name="ws-read"),
        asyncio.create_task(subscriber.dropped.wait(), name="ws-dropped"),
    }
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    failures = [t.exception() for t in done if not t.cancelled() and t.exception() is not None]
    if subscriber.ended_because is not None:
        log.info("ended the websocket of %s: %s", listener.name, subscriber.ended_because)
        await _close(websocket, CLOSE_POLICY_VIOLATION, subscriber.ended_because)
    elif subscriber.dropped.is_set() or any(isinstance(e, TimeoutError) for e in failures):
        log.warning("dropped websocket client %s: it fell behind; it must resync", listener.name)
        await _close(websocket, CLOSE_RESYNC, "fell behind; reconnect and resync")
    else:
        for exc in failures:
            if not isinstance(exc, WebSocketDisconnect | RuntimeError):
                log.warning("websocket of %s ended: %r", listener.name, exc)
        await _close(websocket, 1000, "bye")
