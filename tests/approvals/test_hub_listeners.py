"""The hub's side of who hears what: a gateway only its own requests' events, and a
subscriber the service ends hears nothing more."""

from __future__ import annotations

import asyncio

import pytest

from approvals.live_events import EventHub, LiveEvent

pytestmark = pytest.mark.anyio


def event(n: int, gateway: str | None) -> LiveEvent:
    request: dict[str, object] = {"id": f"r{n}", "status": "pending"}
    if gateway is not None:
        request["gateway"] = gateway
    return LiveEvent(type="request.created", request_id=f"r{n}", request=request)


def drained(queue: asyncio.Queue[LiveEvent]) -> list[str]:
    return [queue.get_nowait().request_id for _ in range(queue.qsize())]


async def test_a_gateway_subscriber_gets_only_its_own_requests_events() -> None:
    hub = EventHub()
    hub.bind(asyncio.get_running_loop())
    north, everyone = hub.subscribe(gateway="gw-north"), hub.subscribe()
    hub.publish(event(1, "gw-north"))
    hub.publish(event(2, "gw-south"))
    # A replica on an older version sends views without `gateway`: nobody's, so no gateway's.
    hub.publish(event(3, None))
    await asyncio.sleep(0)
    assert drained(north.queue) == ["r1"]
    assert drained(everyone.queue) == ["r1", "r2", "r3"]


async def test_an_ended_subscriber_hears_nothing_more_and_knows_why() -> None:
    hub = EventHub()
    hub.bind(asyncio.get_running_loop())
    revoked, kept = hub.subscribe(token_hash="aaa"), hub.subscribe(token_hash="bbb")
    ended = hub.end_where(lambda sub: "revoked" if sub.token_hash == "aaa" else None)
    hub.publish(event(1, "gw-north"))
    await asyncio.sleep(0)
    assert ended == 1 and hub.subscriber_count == 1
    assert revoked.dropped.is_set() and revoked.ended_because == "revoked"
    assert drained(revoked.queue) == [] and drained(kept.queue) == ["r1"]
