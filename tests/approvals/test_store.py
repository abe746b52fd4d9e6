"""Write routes: requests that arrive together commit together, but fail alone
(SQLite, and PostgreSQL where a batch holds the audit chain's head once)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session
from support import enforced_policy, held_call

from approvals import errors, lifecycle
from approvals.audit.chain import verify_chain
from approvals.audit.record import REQUEST_CREATED, record_event
from approvals.db import (
    WriteScope,
    WriteTurn,
    make_engine,
    read_session,
    session_scope,
    write_turn_of,
)
from approvals.live_events import EventHub, LiveEvent, Subscriber, emit
from approvals.migrate import upgrade
from approvals.models import ApiToken, ApprovalRequest, utcnow
from approvals.schemas import RequestCreate
from approvals.store import Store

pytestmark = pytest.mark.anyio

TOKENS = ApiToken.__table__  # type: ignore[attr-defined]
REQUESTS = ApprovalRequest.__table__  # type: ignore[attr-defined]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'writes.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'writes.db'}"
    else:
        url = request.getfixturevalue("postgres").database("writes")
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def _call(n: int) -> RequestCreate:
    return held_call(arguments={"outputPath": f"/tmp/tests/story-{n}.spec.ts"}, caller="agent")


_POLICY = enforced_policy()
_TIMEOUT_SECONDS = 600


def _listening_runner(engine: Engine) -> tuple[Store, Subscriber]:
    """A runner on this loop, and a subscriber that hears every event it publishes."""
    hub = EventHub()
    hub.bind(asyncio.get_running_loop())
    return Store(engine, hub), hub.subscribe()


async def _create(writes: Store, n: int) -> lifecycle.Created:
    return await writes.run(
        lambda s: lifecycle.create_request(s, _call(n), policy=_POLICY, created_by="gw")
    )


def _count(engine: Engine, model: Any) -> int:
    with read_session(engine) as session:
        return int(session.exec(select(func.count()).select_from(model)).one()[0])


def _transactions(engine: Engine) -> list[int]:
    begun: list[int] = []
    event.listen(engine, "begin", lambda conn: begun.append(1))
    return begun


async def test_calls_that_arrive_together_share_one_commit_and_fail_alone(
    any_engine: Engine,
) -> None:
    engine = any_engine
    writes, heard = _listening_runner(engine)
    begun = _transactions(engine)

    def half_done_then_broken(scope: WriteScope) -> None:
        # A unit that wrote something and then failed must leave nothing behind.
        ghost = {"name": "ghost", "role": "gateway", "token_hash": "0" * 64, "prefix": "x"}
        scope.connection().execute(insert(TOKENS).values(created_at=utcnow(), **ghost))
        raise RuntimeError("the unit broke half way")

    def chained_then_broken(scope: WriteScope) -> None:
        # Its audit event is undone too, and the next unit chains from the head before it.
        record_event(scope, REQUEST_CREATED, actor="ghost", channel="api", request_id="ghost")
        raise RuntimeError("the unit broke after appending to the audit chain")

    results = await asyncio.gather(
        *(_create(writes, n) for n in range(3)),
        writes.run(lambda s: lifecycle.decide(s, "nope", approver="alice", decision="approve")),
        writes.run(half_done_then_broken),
        writes.run(chained_then_broken),
        *(_create(writes, n) for n in range(3, 5)),
        return_exceptions=True,
    )

    created = results[:3] + results[6:]
    missing, broken, unchained = results[3:6]
    assert all(isinstance(r, lifecycle.Created) and r.created for r in created)
    assert isinstance(missing, errors.NotFound)
    assert isinstance(broken, RuntimeError) and isinstance(unchained, RuntimeError)
    assert len(begun) == 1, "the eight units should have run in one transaction"
    assert _count(engine, ApprovalRequest) == 5
    assert _count(engine, ApiToken) == 0
    verified = verify_chain(engine)
    assert verified.ok, verified.problem
    assert verified.count == 5 and verified.last_id == 5  # one request.created each
    # Each committed request was announced once; the failures announced nothing.
    announced = [heard.queue.get_nowait().request_id for _ in range(heard.queue.qsize())]
    assert sorted(announced) == sorted(r.view.id for r in created)  # type: ignore[union-attr]


async def test_when_the_commit_fails_every_call_of_the_batch_fails_and_nothing_is_announced(
    any_engine: Engine,
) -> None:
    engine = any_engine
    writes, heard = _listening_runner(engine)

    def disk_full(conn: Any) -> None:
        raise OSError("disk full")

    event.listen(engine, "commit", disk_full)
    results = await asyncio.gather(
        *(_create(writes, n) for n in range(3)),
        return_exceptions=True,
    )
    event.remove(engine, "commit", disk_full)

    assert all(isinstance(r, OSError) for r in results)
    assert heard.queue.empty()
    assert _count(engine, ApprovalRequest) == 0
    # The runner is still usable afterwards.
    again = await _create(writes, 9)
    assert again.created and _count(engine, ApprovalRequest) == 1


async def test_while_another_process_writes_the_loop_keeps_serving(engine: Engine) -> None:
    writes, _ = _listening_runner(engine)
    # A second lock file handle on the same database is what another process holds.
    other_process = WriteTurn(engine.url.database)
    assert other_process.try_acquire()
    try:
        pending = asyncio.ensure_future(_create(writes, 1))
        # Were the loop waiting for the turn, these sleeps (and the release) would never run.
        await asyncio.sleep(0.2)
        assert not pending.done()
    finally:
        other_process.release()
    result = await asyncio.wait_for(pending, 10)
    assert result.created and _count(engine, ApprovalRequest) == 1
    other_process.close()


def test_the_write_turn_is_shared_between_processes_through_a_lock_file(tmp_path: Path) -> None:
    database = str(tmp_path / "shared.db")
    here, there = WriteTurn(database), WriteTurn(database)
    try:
        assert here.try_acquire()
        assert not there.try_acquire()
        here.release()
        assert there.try_acquire()
        there.release()
    finally:
        here.close()
        there.close()
    assert (tmp_path / "shared.db-writer.lock").exists()


def test_postgresql_needs_no_write_turn() -> None:
    engine = make_engine("postgresql+psycopg://signoff@127.0.0.1:1/none")
    assert write_turn_of(engine) is None


async def test_a_retry_after_the_timeout_expires_the_old_request_and_opens_a_new_one(
    engine: Engine,
) -> None:
    writes, heard = _listening_runner(engine)
    first = await _create(writes, 1)
    # The sweeper has not run yet when the agent retries after the timeout.
    later = utcnow() + timedelta(seconds=_TIMEOUT_SECONDS + 1)
    second = await writes.run(
        lambda s: lifecycle.create_request(s, _call(1), policy=_POLICY, created_by="gw", now=later)
    )

    assert second.created and second.view.id != first.view.id
    with read_session(engine) as session:
        assert lifecycle.get_request(session, first.view.id).status == "expired"
    announced = [heard.queue.get_nowait().type for _ in range(heard.queue.qsize())]
    assert announced == ["request.created", "request.expired", "request.created"]


def test_the_same_retry_in_a_plain_session_also_opens_a_new_request(engine: Engine) -> None:
    with session_scope(engine) as session:
        first = lifecycle.create_request(session, _call(2), policy=_POLICY, created_by="gw")
    later = utcnow() + timedelta(seconds=_TIMEOUT_SECONDS + 1)
    with session_scope(engine) as session:
        second = lifecycle.create_request(
            session, _call(2), policy=_POLICY, created_by="gw", now=later
        )
    assert second.created and second.view.id != first.view.id
    with read_session(engine) as session:
        assert lifecycle.get_request(session, first.view.id).status == "expired"


def _observed_after_commit(engine: Engine, hub: EventHub) -> list[tuple[str, str]]:
    """(event type, the request's status as another connection reads it then), per event
    published: a status the event's change gave it shows the commit came first."""
    seen: list[tuple[str, str]] = []

    def observe(evt: Any) -> None:
        with read_session(engine) as session:
            seen.append((evt.type, lifecycle.get_request(session, evt.request_id).status))

    hub.observers.append(observe)
    return seen


async def test_code_without_a_loop_publishes_after_its_commit_and_a_failed_unit_nothing(
    any_engine: Engine,
) -> None:
    """The CLI and worker threads (`run_now`) take the API's path: the same commit, the
    events published once it is durable, nothing of a unit that failed."""
    engine = any_engine
    hub = EventHub()
    hub.bind(asyncio.get_running_loop())
    heard = hub.subscribe()
    seen = _observed_after_commit(engine, hub)
    store = Store(engine, hub)

    def create(n: int) -> lifecycle.Created:
        return store.run_now(
            lambda s: lifecycle.create_request(s, _call(n), policy=_POLICY, created_by="gw")
        )

    created = await asyncio.to_thread(create, 1)

    def cancelled_then_broken(scope: WriteScope) -> None:
        # Written and announced, but the unit fails before its commit: neither stays.
        scope.connection().execute(
            update(REQUESTS).where(REQUESTS.c.id == created.view.id).values(status="cancelled")
        )
        emit(
            scope,
            LiveEvent(type="request.cancelled", request_id=created.view.id, request=created.view),
        )
        raise RuntimeError("broke after the change, before its commit")

    with pytest.raises(RuntimeError):
        await asyncio.to_thread(store.run_now, cancelled_then_broken)

    def disk_full(conn: Any) -> None:
        raise OSError("disk full")

    event.listen(engine, "commit", disk_full)
    with pytest.raises(OSError):
        await asyncio.to_thread(
            store.run_now,
            lambda s: lifecycle.decide(s, created.view.id, approver="alice", decision="reject"),
        )
    event.remove(engine, "commit", disk_full)
    await asyncio.sleep(0.05)  # room for a wrongly published event to arrive
    with read_session(engine) as session:
        assert lifecycle.get_request(session, created.view.id).status == "pending"
    assert seen == [("request.created", "pending")]

    decided = await asyncio.to_thread(
        store.run_now,
        lambda s: lifecycle.decide(s, created.view.id, approver="alice", decision="approve"),
    )
    assert decided.view.status == "approved"
    assert seen == [("request.created", "pending"), ("request.decided", "approved")]
    await asyncio.sleep(0.05)
    types = [heard.queue.get_nowait().type for _ in range(heard.queue.qsize())]
    assert types == ["request.created", "request.decided"]


async def test_the_sweeper_writes_through_the_store_and_announces_after_its_commit(
    any_engine: Engine,
) -> None:
    """ORM units (the sweeper's) share the path: savepoints in the same transaction."""
    engine = any_engine
    hub = EventHub()
    hub.bind(asyncio.get_running_loop())
    seen = _observed_after_commit(engine, hub)
    store = Store(engine, hub)
    created = [await _create(store, n) for n in range(2)]
    later = utcnow() + timedelta(seconds=_TIMEOUT_SECONDS + 1)

    def expire_then_broken(session: Session) -> None:
        # Written and announced, but the unit fails before its commit: neither stays.
        request = session.get(ApprovalRequest, created[0].view.id)
        assert request is not None
        request.status = "expired"
        session.add(request)
        session.flush()
        view = created[0].view
        emit(session, LiveEvent(type="request.expired", request_id=view.id, request=view))
        raise RuntimeError("the sweep broke")

    with pytest.raises(RuntimeError):
        await asyncio.to_thread(store.run_orm_now, expire_then_broken)
    expired = await asyncio.to_thread(
        store.run_orm_now, lambda session: lifecycle.expire_due(session, now=later)
    )
    assert sorted(expired) == sorted(c.view.id for c in created)
    assert seen[2:] == [("request.expired", "expired")] * 2, "none from the broken sweep"
    verified = verify_chain(engine)
    assert verified.ok, verified.problem
