"""Cross-replica fan-out on PostgreSQL: LISTEN/NOTIFY carries events between replicas.

Several service replicas share one PostgreSQL database. Each keeps its in-process
`EventHub` (long-poll waiters, websocket clients, the Slack notifier) and:

- relays: in the transaction that makes a change, just before it commits, every
  event about to be published is also sent with `pg_notify('signoff_events', ...)`.
  PostgreSQL delivers a notification only if that transaction commits, and in
  commit order, so a replica never hears of a change that was rolled back;
- listens: one task per replica holds a psycopg connection that LISTENs and hands
  every other replica's events to the local hub. Its own events (same replica id)
  are skipped: the local hub already got them right after the commit.

A notification payload must stay under 8000 bytes: the whole event goes when it
fits, otherwise only its type and request id, and the listener loads the request
as stored now. When the listening connection drops, the listener reconnects and
tells every websocket subscriber to resync (they may have missed events) and
every long-poll to re-read its request; otherwise a long-poll reads the
database only when it starts, and answers from the events it hears. A
connection that dies silently is found by a probe after a quiet spell
(`PROBE_EVERY_SECONDS`), and replaced the same way.
SQLite needs none of this: one process owns the file and its hub is the only one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from datetime import datetime
from typing import Any

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from approvals.db import read_session
from approvals.live_events import EventHub, GrantEvent, LiveEvent

log = logging.getLogger(__name__)

CHANNEL = "signoff_events"
# The listening connection's application_name (pg_stat_activity), plus the replica id.
LISTENER_NAME = "signoff-listener"
# PostgreSQL refuses payloads of 8000 bytes or more; keep clear of the limit.
MAX_PAYLOAD_BYTES = 7900
RECONNECT_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)
# A connection that died without a word (a failover, a dropped NAT or firewall
# entry, a stalled proxy) delivers nothing and raises nothing: after this long
# without a notification the listener asks the server something, and reconnects
# when no answer comes within PROBE_TIMEOUT_SECONDS.
PROBE_EVERY_SECONDS = 5.0
PROBE_TIMEOUT_SECONDS = 5.0
# unnest keeps the array's order, and notifications of one transaction are
# delivered in the order they were sent.
_NOTIFY_ALL = text(
    "SELECT pg_notify(:channel, payload) FROM unnest(CAST(:payloads AS text[])) AS payload"
)


def new_replica_id() -> str:
    return secrets.token_hex(6)


def encode(evt: LiveEvent, origin: str) -> str:
    """The NOTIFY payload for `evt`: the whole event, or a reference when it is too big."""
    full = json.dumps({"origin": origin, "event": evt.to_json()}, separators=(",", ":"))
    if len(full.encode()) <= MAX_PAYLOAD_BYTES:
        return full
    ref = {"type": evt.type, "request_id": evt.request_id, "at": evt.at.isoformat()}
    return json.dumps({"origin": origin, "ref": ref}, separators=(",", ":"))


def decode(data: dict[str, Any], engine: Engine) -> LiveEvent:
    """The event in a parsed payload; a reference is completed from the database."""
    if "event" in data and "grant_id" in data["event"]:
        body = data["event"]
        return GrantEvent(
            type=body["type"],
            request_id=body["grant_id"],
            request={},
            at=datetime.fromisoformat(body["at"]),
            remote=True,
        )
    if "event" in data:
        body = data["event"]
        request = body["request"]
    else:
        body = data["ref"]
        request = _load_public(engine, body["request_id"])
    return LiveEvent(
        type=body["type"],
        request_id=body["request_id"],
        request=request,
        at=datetime.fromisoformat(body["at"]),
        remote=True,
    )


def _load_public(engine: Engine, request_id: str) -> dict[str, Any]:
    from approvals import lifecycle  # lifecycle imports live_events; keep this module light

    with read_session(engine) as session:
        request = lifecycle.get_request(session, request_id)
        return lifecycle.public(session, request).model_dump(mode="json")


def libpq_dsn(engine: Engine) -> str:
    """The engine's URL as a plain libpq connection string for psycopg."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


class PgFanout:
    """Relays this replica's events through NOTIFY and feeds others' to the local hub."""

    def __init__(
        self,
        engine: Engine,
        hub: EventHub,
        replica_id: str | None = None,
        *,
        probe_every: float = PROBE_EVERY_SECONDS,
        probe_timeout: float = PROBE_TIMEOUT_SECONDS,
    ) -> None:
        self.engine = engine
        self.hub = hub
        self.replica_id = replica_id or new_replica_id()
        self.probe_every = probe_every
        self.probe_timeout = probe_timeout
        self.listening = asyncio.Event()
        self.received = 0  # events from other replicas handed to the hub
        hub.relay = self.relay

    def relay(self, conn: Connection, events: list[LiveEvent]) -> None:
        """Called just before commit, in the same transaction: one round trip for all."""
        conn.execute(
            _NOTIFY_ALL,
            {"channel": CHANNEL, "payloads": [encode(evt, self.replica_id) for evt in events]},
        )

    async def run(self) -> None:
        """LISTEN until cancelled, reconnecting (and asking subscribers to resync) on errors."""
        import psycopg

        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    libpq_dsn(self.engine),
                    autocommit=True,
                    # Named, so that an operator can tell it from the pool's connections.
                    application_name=f"{LISTENER_NAME}-{self.replica_id}",
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if failures:
                        # Events may have gone by while we were away.
                        self.hub.drop_subscribers()
                        self.hub.tell_watches_they_missed()
                    failures = 0
                    self.listening.set()
                    while True:
                        async for note in conn.notifies(timeout=self.probe_every):
                            await self._handle(note.payload)
                        # Notifications that arrive meanwhile wait in psycopg's backlog.
                        await asyncio.wait_for(conn.execute("SELECT 1"), self.probe_timeout)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.listening.clear()
                delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                failures += 1
                log.exception("LISTEN %s failed; reconnecting in %.1fs", CHANNEL, delay)
                await asyncio.sleep(delay)

    async def _handle(self, payload: str) -> None:
        try:
            data: dict[str, Any] = json.loads(payload)
            if data.get("origin") == self.replica_id:
                return  # ours: the local hub had it right after the commit
            if "event" in data:
                evt = decode(data, self.engine)
            else:  # a reference: the request is read from the database
                evt = await run_in_threadpool(decode, data, self.engine)
        except Exception:
            log.exception("ignoring an unreadable notification: %.200s", payload)
            return
        self.received += 1
        self.hub.publish(evt)
