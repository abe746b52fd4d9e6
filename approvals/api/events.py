"""WS /api/v1/events: the live stream of request events.

Authentication, any one of (checked in this order):

- `Authorization: Bearer <token>` header (gateways, scripts);
- `Sec-WebSocket-Protocol: bearer, <token>` (browsers cannot set headers; the
  server answers with the `bearer` subprotocol);
- `?token=<token>` in the URL (last resort: URLs end up in logs);
- the dashboard's session cookie together with `?csrf=<the page's CSRF token>`;
- none of those: the first message must be `{"type": "auth", "token": "<token>"}`
  within 10 seconds.

Any role may subscribe (gateway, approver, auditor, admin). A socket without
valid credentials is closed with 1008 (policy violation).

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
that falls more than `SIGNOFF_WS_QUEUE_SIZE` events behind is closed with code
4000 ("resync"): reconnect, then resync from the REST list.
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
from starlette.websockets import WebSocketDisconnect, WebSocketState

from approvals.dashboard.auth import SESSION_COOKIE, load_session
from approvals.db import session_scope
from approvals.events import EventHub, Subscriber
from approvals.models import Role, utcnow
from approvals.settings import Settings
from approvals.tokens import authenticate

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1")

CLOSE_POLICY_VIOLATION = 1008
CLOSE_RESYNC = 4000
AUTH_TIMEOUT_SECONDS = 10.0
_CLOSE_TIMEOUT_SECONDS = 2.0
STREAM_ROLES = frozenset(r.value for r in Role)


@dataclass(frozen=True)
class Listener:
    name: str
    role: str


def _token_listener(engine: Engine, token: str) -> Listener | None:
    with session_scope(engine) as session:
        row = authenticate(session, token.strip())
    return None if row is None else Listener(row.name, row.role)


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
        return await run_in_threadpool(_token_listener, engine, token)
    signer = getattr(websocket.app.state, "signer", None)
    if signer is not None and websocket.cookies.get(SESSION_COOKIE):
        person = await run_in_threadpool(load_session, websocket, engine, signer)
        # The CSRF token proves the page is ours: cookies alone would let any
        # site a signed-in person visits open this socket in their name.
        if person is not None and signer.check_csrf(
            person.nonce, websocket.query_params.get("csrf")
        ):
            return Listener(person.name, person.role)
        return None
    token = await _first_message_token(websocket)
    if token is None:
        return None
    return await run_in_threadpool(_token_listener, engine, token)


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
    if listener is None or listener.role not in STREAM_ROLES:
        await _close(websocket, CLOSE_POLICY_VIOLATION, "a valid API token is required")
        return
    subscriber = hub.subscribe()
    try:
        await _stream(websocket, subscriber, listener, settings.ws_heartbeat_seconds)
    finally:
        hub.unsubscribe(subscriber)


async def _stream(
    websocket: WebSocket, subscriber: Subscriber, listener: Listener, heartbeat: float
) -> None:
    send_lock = asyncio.Lock()

    async def send(text: str) -> None:
        async with send_lock:
            await websocket.send_text(text)

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

    async def pump() -> None:
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
    if subscriber.dropped.is_set():
        log.warning("dropped websocket client %s: it fell behind; it must resync", listener.name)
        await _close(websocket, CLOSE_RESYNC, "fell behind; reconnect and resync")
    else:
        for task in done:
            exc = task.exception() if not task.cancelled() else None
            if exc is not None and not isinstance(exc, WebSocketDisconnect | RuntimeError):
                log.warning("websocket of %s ended: %r", listener.name, exc)
        await _close(websocket, 1000, "bye")
