"""NOTIFY payloads between replicas: whole events when they fit, references when not."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from support import enforced_policy, held_call

from approvals import errors, fanout, lifecycle, migrate
from approvals.db import make_engine, read_session
from approvals.live_events import MISSED, EventHub, LiveEvent
from approvals.store import Store


def create(engine: Any, arguments: dict[str, Any], hub: EventHub | None = None) -> str:
    data = held_call(arguments=arguments)
    return Store(engine, hub).run_now(
        lambda scope: (
            lifecycle.create_request(
                scope, data, policy=enforced_policy(), created_by="gw"
            ).request.id
        )
    )


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'fanout.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_a_small_event_travels_whole_and_is_marked_remote(engine: Any) -> None:
    evt = LiveEvent(type="request.created", request_id="r1", request={"id": "r1", "x": "é"})
    payload = fanout.encode(evt, "replica-a")
    data = json.loads(payload)
    assert data["origin"] == "replica-a" and "event" in data
    back = fanout.decode(data, engine)
    assert (back.type, back.request_id, back.request, back.at) == (
        evt.type,
        evt.request_id,
        evt.request,
        evt.at,
    )
    assert back.remote and not evt.remote


def test_a_big_event_travels_as_a_reference_and_is_read_back(engine: Any) -> None:
    request_id = create(engine, {"script": "é" * 6000})  # > 8000 bytes as JSON
    with read_session(engine) as session:
        view = lifecycle.public(session, lifecycle.get_request(session, request_id))
    evt = LiveEvent(
        type="request.created", request_id=request_id, request=view.model_dump(mode="json")
    )
    payload = fanout.encode(evt, "replica-a")
    assert len(payload.encode()) < 8000
    data = json.loads(payload)
    assert "event" not in data and data["ref"]["request_id"] == request_id
    back = fanout.decode(data, engine)
    assert back.request == evt.request and back.type == "request.created"


def test_the_relay_sees_exactly_the_committed_events(engine: Any) -> None:
    hub = EventHub()
    relayed: list[list[str]] = []
    hub.relay = lambda session, events: relayed.append([e.type for e in events])
    request_id = create(engine, {"a": 1}, hub)
    assert relayed == [["request.created"]]
    with pytest.raises(errors.Forbidden):
        Store(engine, hub).run_now(
            lambda scope: lifecycle.decide(
                scope, request_id, approver="mallory", decision="approve"
            )
        )
    assert relayed == [["request.created"]]


@pytest.mark.anyio
async def test_a_remote_event_reaches_local_waiters_and_own_events_are_skipped(
    engine: Any,
) -> None:
    hub = EventHub()
    hub.bind(asyncio.get_running_loop())
    relay = fanout.PgFanout(engine, hub, replica_id="me")
    sub = hub.subscribe()
    evt = LiveEvent(type="request.decided", request_id="r9", request={"id": "r9"})
    await relay._handle(fanout.encode(evt, "me"))
    assert sub.queue.empty()
    waiter = asyncio.create_task(hub.wait_for("r9", 5))
    await asyncio.sleep(0)
    await relay._handle(fanout.encode(evt, "other"))
    got = await waiter
    assert got is not None and got.remote and got.request_id == "r9"
    assert sub.queue.get_nowait().request_id == "r9"
    assert relay.received == 1


class StallingProxy:
    """A loopback TCP proxy in front of PostgreSQL whose connections can go silent:
    after `stall()` the ones open so far carry nothing either way, yet stay open (as
    behind a failed-over server or a firewall that forgot them); new ones still work."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stalled: set[int] = set()  # generations that no longer carry data
        self.generation = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def stall(self) -> None:
        self.stalled.add(self.generation)
        self.generation += 1

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            born = self.generation
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst, born), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, born: int) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if born in self.stalled:
                    continue  # swallowed: the other side hears nothing, nor an end
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@pytest.mark.anyio
async def test_a_listening_connection_that_goes_silent_is_replaced_and_watches_re_read(
    postgres: Any,
) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(postgres.database("silent_listener"))
    assert url.port is not None
    proxy = StallingProxy(url.port)
    engine = make_engine(url.set(port=proxy.port).render_as_string(hide_password=False))
    hub = EventHub()
    hub.bind(asyncio.get_running_loop())
    relay = fanout.PgFanout(engine, hub, replica_id="me", probe_every=0.3, probe_timeout=0.5)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.wait_for(relay.listening.wait(), 10)
        watch = hub.watch("r1")
        proxy.stall()
        # Nothing arrives on a silent connection, and nothing fails on it either:
        # only the listener's own probe can tell, and then the watch must re-read.
        assert await watch.next(10) is MISSED
        await asyncio.wait_for(relay.listening.wait(), 10)
        # The new connection hears another replica's events again.
        evt = LiveEvent(type="request.decided", request_id="r1", request={"id": "r1"})
        direct = make_engine(url.render_as_string(hide_password=False))
        try:
            with direct.begin() as conn:
                conn.execute(
                    text("SELECT pg_notify(:c, :p)"),
                    {"c": fanout.CHANNEL, "p": fanout.encode(evt, "other")},
                )
        finally:
            direct.dispose()
        heard = await watch.next(10)
        assert isinstance(heard, LiveEvent) and heard.remote and heard.request_id == "r1"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        proxy.close()
        engine.dispose()
