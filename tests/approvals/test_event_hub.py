"""The in-process event hub: subscribers get every event, a full one is dropped, nobody waits."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from approvals.live_events import EventHub, LiveEvent

pytestmark = pytest.mark.anyio


def event(n: int, kind: str = "request.created") -> LiveEvent:
    return LiveEvent(type=kind, request_id=f"r{n}", request={"id": f"r{n}", "status": "pending"})


async def test_every_subscriber_gets_every_event_in_order() -> None:
    hub = EventHub(queue_size=16)
    hub.bind(asyncio.get_running_loop())
    first, second = hub.subscribe(), hub.subscribe()
    for n in range(5):
        hub.publish(event(n))
    for sub in (first, second):
        assert [sub.queue.get_nowait().request_id for _ in range(5)] == [f"r{n}" for n in range(5)]
    hub.unsubscribe(first)
    assert hub.subscriber_count == 1


async def test_events_published_from_a_worker_thread_arrive_on_the_loop() -> None:
    hub = EventHub()
    hub.bind(asyncio.get_running_loop())
    sub = hub.subscribe()
    threading.Thread(target=hub.publish, args=(event(1),)).start()
    received = await asyncio.wait_for(sub.queue.get(), 2)
    assert received.request_id == "r1"


async def test_a_subscriber_that_falls_behind_is_dropped_without_blocking_the_others() -> None:
    hub = EventHub(queue_size=4)
    hub.bind(asyncio.get_running_loop())
    stuck, reader = hub.subscribe(), hub.subscribe()
    received: list[str] = []
    started = time.perf_counter()
    for n in range(50):
        hub.publish(event(n))
        received.append(reader.queue.get_nowait().request_id)
    assert time.perf_counter() - started < 0.05  # publishing never waited for `stuck`
    assert received == [f"r{n}" for n in range(50)]
    assert stuck.dropped.is_set() and stuck.queue.qsize() == 4
    assert hub.subscriber_count == 1  # only the reader is left


async def test_an_event_is_encoded_once_for_all_subscribers() -> None:
    evt = event(7, "request.decided")
    assert evt.text is evt.text
    assert '"type":"request.decided"' in evt.text and '"request_id":"r7"' in evt.text
