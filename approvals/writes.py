"""How the API's write routes run their unit of work: group commit on SQLite.

A unit of work is a function of a session that does one request's writes and
commits (a `lifecycle` call). On PostgreSQL units run concurrently in the worker
pool, each in its own session and transaction.

On SQLite only one writer runs at a time anyway. A commit costs about as much
as the rest of a unit (every index page touched is written to the WAL), and
handing work to a thread and back cost more than the unit itself, because the
thread and the loop take turns at the GIL. So units are run in batches, on the
event loop thread: the units
that arrived during one turn of the loop run one after another in one
transaction, each in its own SAVEPOINT, and one COMMIT makes them all durable.
A unit that fails rolls back to its savepoint and fails alone; if the commit
fails, every unit of the batch fails with it. Answers and events go out only
after the commit. A batch runs on the loop only when the write turn is free
(`db.WriteTurn.try_acquire`), so the loop never waits for another writer;
otherwise the batch waits for the turn in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio.to_thread
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from approvals.db import WriteTurn, session_scope, write_turn_of
from approvals.events import Event, EventHub, attach_hub

T = TypeVar("T")

# Units per transaction at most: one batch holds the loop for a few milliseconds.
MAX_BATCH = 64


@dataclass
class _Unit(Generic[T]):
    work: Callable[[Session], T]
    future: asyncio.Future[T]
    result: Any = None
    error: BaseException | None = None
    events: list[Event] = field(default_factory=list)


class _Collector(EventHub):
    """Stands in for the hub while a batch runs: events wait for the batch's commit."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []

    def publish(self, evt: Event) -> None:
        self.events.append(evt)


class WriteRunner:
    """Runs units of write work for the API; see the module docstring."""

    def __init__(self, engine: Engine, hub: EventHub) -> None:
        self.engine = engine
        self.hub = hub
        self._turn: WriteTurn | None = write_turn_of(engine)
        self._queue: list[_Unit[Any]] = []
        # The batch waiting for the turn in a thread, if any: later units queue behind it.
        self._waiting: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[Session], T]) -> T:
        """The result of `work(session)` once its transaction has committed."""
        if self._turn is None:
            return await anyio.to_thread.run_sync(self._run_alone, work)
        loop = asyncio.get_running_loop()
        unit: _Unit[T] = _Unit(work, loop.create_future())
        self._queue.append(unit)
        if len(self._queue) == 1 and self._waiting is None:
            # Units that arrive before the loop gets back to this join the batch.
            loop.call_soon(self._flush)
        return await unit.future

    def _run_alone(self, work: Callable[[Session], T]) -> T:
        with session_scope(self.engine) as session:
            attach_hub(session, self.hub)
            return work(session)

    def _flush(self) -> None:
        if self._waiting is not None or not self._queue:
            return
        loop = asyncio.get_running_loop()
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        assert self._turn is not None
        if self._turn.try_acquire():
            try:
                self._commit(batch)
            finally:
                self._turn.release()
            self._settle(batch)
            if self._queue:
                loop.call_soon(self._flush)
            return
        # Another thread or process is writing: wait for the turn off the loop.
        self._waiting = loop.create_task(self._commit_when_free(batch))

    async def _commit_when_free(self, batch: list[_Unit[Any]]) -> None:
        assert self._turn is not None
        turn = self._turn

        def commit() -> None:
            with turn.held():
                self._commit(batch)

        try:
            await anyio.to_thread.run_sync(commit)
            self._settle(batch)
        finally:
            self._waiting = None
            self._flush()

    def _commit(self, batch: list[_Unit[Any]]) -> None:
        """Run the batch's units in savepoints of one transaction and commit it."""
        try:
            with self.engine.connect() as conn, conn.begin():
                for unit in batch:
                    self._run_unit(conn, unit)
        except Exception as exc:  # BEGIN or COMMIT failed: nothing of the batch stays
            for unit in batch:
                if unit.error is None:
                    unit.error = exc
                unit.events.clear()

    def _run_unit(self, conn: Connection, unit: _Unit[Any]) -> None:
        collector = _Collector()
        # The unit's commit releases its savepoint; the batch's COMMIT is what lands.
        with Session(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        ) as session:
            attach_hub(session, collector)
            try:
                unit.result = unit.work(session)
            except Exception as exc:
                session.rollback()
                unit.error = exc
                return
        unit.events = collector.events

    def _settle(self, batch: list[_Unit[Any]]) -> None:
        """After the commit: publish the batch's events and answer its callers."""
        for unit in batch:
            for evt in unit.events:
                self.hub.publish(evt)
        for unit in batch:
            if unit.future.done():  # the caller went away
                continue
            if unit.error is not None:
                unit.future.set_exception(unit.error)
            else:
                unit.future.set_result(unit.result)

    def close(self) -> None:
        """Nothing is left to do once the server has stopped taking requests."""
        self._queue.clear()
