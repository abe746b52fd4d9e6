"""A channel plugs into the outbox: what a change enqueues commits with it, or not at all,
and the worker hands it over in order, retrying with the same event id."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from pydantic import BaseModel
from sqlalchemy.engine import Engine
from support import enforced_policy, held_call

from approvals import lifecycle
from approvals.db import WriteScope, make_engine
from approvals.live_events import EventHub, LiveEvent, emit
from approvals.migrate import upgrade
from approvals.outbox import (
    Delivery,
    DeliveryFailed,
    DeliveryStatus,
    Notification,
    Outbox,
    RetrySchedule,
)
from approvals.outbox import store as outbox_store
from approvals.settings import Settings
from approvals.store import Store

pytestmark = pytest.mark.anyio


class Note(BaseModel):
    text: str


class Recorder:
    """A channel that keeps what it is handed and fails the first `fail_first` attempts."""

    name = "recorder"

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.attempts: list[Delivery] = []
        self.arrived = asyncio.Event()

    async def deliver(self, delivery: Delivery) -> None:
        self.attempts.append(delivery)
        if len(self.attempts) <= self.fail_first:
            raise DeliveryFailed("receiver said 503")
        self.arrived.set()


def _route(evt: LiveEvent) -> Sequence[Notification]:
    return [
        Notification(
            channel="recorder",
            target="somewhere",
            event_type=evt.type,
            request_id=evt.request_id,
            payload=Note(text=evt.type),
        )
    ]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def _settings() -> Settings:
    return Settings(
        delivery_retry_first_seconds=0.2,
        delivery_retry_cap_seconds=1.0,
        delivery_poll_seconds=0.1,
    )


async def _until(condition: object, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_created_request_is_delivered_after_a_failed_attempt_with_one_event_id(
    engine: Engine,
) -> None:
    hub = EventHub()
    hub.bind(asyncio.get_running_loop())
    outbox = Outbox(engine, hub, _settings())
    recorder = Recorder(fail_first=1)
    outbox.add_router(_route)
    outbox.add_channel(recorder)
    await outbox.start()
    try:
        writes = Store(engine, hub)
        created = await writes.run(
            lambda s: lifecycle.create_request(
                s, held_call(caller="agent"), policy=enforced_policy(), created_by="gw"
            )
        )
        await asyncio.wait_for(recorder.arrived.wait(), 10)
        await _until(lambda: outbox_store.listing(engine)[0].status == DeliveryStatus.DELIVERED)
    finally:
        await outbox.stop()
    first, second = recorder.attempts
    assert first.event_id == second.event_id
    assert (first.attempt, second.attempt) == (1, 2)
    assert second.parse(Note).text == "request.created"
    assert second.request_id == created.request.id
    [row] = outbox_store.listing(engine)
    assert row.status == DeliveryStatus.DELIVERED and row.attempts == 2


async def test_a_change_that_rolls_back_leaves_nothing_in_the_outbox(engine: Engine) -> None:
    hub = EventHub()
    outbox = Outbox(engine, hub, _settings())
    outbox.add_router(_route)
    store = Store(engine, hub)
    created = store.run_now(
        lambda scope: lifecycle.create_request(
            scope, held_call(caller="agent"), policy=enforced_policy(), created_by="gw"
        )
    )

    def cancelled_then_undone(scope: WriteScope) -> None:
        view = lifecycle.public(scope, created.request)
        emit(scope, LiveEvent(type="request.cancelled", request_id=view.id, request=view))
        scope.rollback()

    store.run_now(cancelled_then_undone)
    assert [r.event_type for r in outbox_store.listing(engine)] == ["request.created"]


async def test_later_events_of_a_request_wait_for_the_earlier_one(engine: Engine) -> None:
    hub = EventHub()
    hub.bind(asyncio.get_running_loop())
    outbox = Outbox(engine, hub, _settings())
    recorder = Recorder(fail_first=2)
    outbox.add_router(_route)
    outbox.add_channel(recorder)
    writes = Store(engine, hub)
    created = await writes.run(
        lambda s: lifecycle.create_request(
            s, held_call(caller="agent"), policy=enforced_policy(), created_by="gw"
        )
    )
    await writes.run(lambda s: lifecycle.cancel(s, created.request.id, by="gw"))
    await outbox.start()
    try:
        await _until(lambda: len(recorder.attempts) >= 4)
    finally:
        await outbox.stop()
    types = [d.event_type for d in recorder.attempts]
    assert types == ["request.created"] * 3 + ["request.cancelled"]


def test_the_retry_schedule_doubles_up_to_its_cap_and_stops_after_the_window() -> None:
    from datetime import timedelta

    from approvals.models import utcnow

    schedule = RetrySchedule(first=1.0, cap=600.0, give_up_after=86_400.0)
    assert [schedule.delay(n) for n in (1, 2, 3, 10, 11, 30)] == [1, 2, 4, 512, 600, 600]
    start = utcnow()
    assert schedule.next_attempt(start, 1, start) == start + timedelta(seconds=1)
    assert schedule.next_attempt(start, 40, start + timedelta(hours=24)) is None


class Slow:
    """A channel that takes `seconds` over every delivery and counts them."""

    name = "recorder"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.attempts: list[Delivery] = []

    async def deliver(self, delivery: Delivery) -> None:
        self.attempts.append(delivery)
        await asyncio.sleep(self.seconds)


async def test_a_slow_delivery_keeps_its_row_and_a_second_worker_never_sends_it_again(
    engine: Engine,
) -> None:
    # Each attempt takes three leases' time: only renewals keep the other worker off.
    settings = _settings().model_copy(
        update={"delivery_lease_seconds": 1.5, "delivery_attempt_timeout_seconds": 10.0}
    )
    workers: list[tuple[Outbox, Slow]] = []
    for _ in range(2):
        hub = EventHub()
        hub.bind(asyncio.get_running_loop())
        outbox = Outbox(engine, hub, settings)
        slow = Slow(4.5)
        outbox.add_router(_route)
        outbox.add_channel(slow)
        workers.append((outbox, slow))
    writes = Store(engine, workers[0][0].hub)
    for n in range(3):
        await writes.run(
            lambda s, n=n: lifecycle.create_request(
                s,
                held_call(caller="agent", arguments={"outputPath": f"/tmp/slow-{n}.spec.ts"}),
                policy=enforced_policy(),
                created_by="gw",
            )
        )
    for outbox, _ in workers:
        await outbox.start()
    try:
        await _until(
            lambda: all(r.status == DeliveryStatus.DELIVERED for r in outbox_store.listing(engine))
        )
    finally:
        for outbox, _ in workers:
            await outbox.stop()
    sent = [d.event_id for _, slow in workers for d in slow.attempts]
    assert len(sent) == 3 and len(set(sent)) == 3
    assert all(r.attempts == 1 for r in outbox_store.listing(engine))


async def test_a_shutdown_mid_delivery_hands_the_row_back_at_once(engine: Engine) -> None:
    hub = EventHub()
    hub.bind(asyncio.get_running_loop())
    outbox = Outbox(engine, hub, _settings())  # leases of 15 s
    slow = Slow(30.0)
    outbox.add_router(_route)
    outbox.add_channel(slow)
    await outbox.start()
    writes = Store(engine, hub)
    await writes.run(
        lambda s: lifecycle.create_request(
            s, held_call(caller="agent"), policy=enforced_policy(), created_by="gw"
        )
    )
    await _until(lambda: slow.attempts)
    await outbox.stop()
    [row] = outbox_store.listing(engine)
    assert row.status == DeliveryStatus.PENDING and row.lease_until is None
    # The next process takes it up at once, not a lease (15 s) later.
    successor = Outbox(engine, EventHub(), _settings())
    recorder = Recorder()
    successor.add_channel(recorder)
    await successor.start()
    try:
        await asyncio.wait_for(recorder.arrived.wait(), 5)
    finally:
        await successor.stop()
    assert recorder.attempts[0].event_id == slow.attempts[0].event_id
