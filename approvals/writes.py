"""How the API's write routes run their unit of work: group commit.

A unit of work is a function of a `db.WriteScope` that does one request's writes
and commits (a `lifecycle` call).

Only one writer runs at a time anyway: on SQLite the file has one write lock,
and on PostgreSQL every write appends to the audit chain, whose head row
(`audit_chain_head`) one transaction at a time may hold. Holding it once per
unit made every unit queue on that row, each waiting for a thread to be
scheduled in turn; holding it once per batch does not. A commit costs about as much
as the rest of a unit (every index page touched is written to the WAL), and
handing work to a thread and back cost more than the unit itself, because the
thread and the loop take turns at the GIL. So units are run in batches, on the
event loop thread: the units that arrived during one turn of the loop run one
after another in one transaction, each in its own SAVEPOINT, and one COMMIT
makes them all durable.
A unit that fails rolls back to its savepoint and fails alone; if the commit
fails, every unit of the batch fails with it. Answers and events go out only
after the commit. A batch runs on the loop only when the write turn is free
(`db.WriteTurn.try_acquire`), so the loop never waits for another writer;
otherwise the batch waits for the turn in a worker thread.

On PostgreSQL a batch always runs in a worker thread, one batch at a time: its
statements are network round trips, and while the thread waits on them the
loop reads the requests of the next batch (twice the throughput of running it
on the loop, measured with bench/store_throughput.py). It locks the chain's
head first, and relays its events to the other replicas (one `pg_notify`
statement) just before its COMMIT.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio.to_thread
from sqlalchemy.engine import Connection, Engine

from approvals.audit.record import HELD_HEAD_KEY, HeldHead, store_head, take_head
from approvals.db import WriteScope, WriteTurn, is_postgresql, session_scope, write_turn_of
from approvals.events import Event, EventHub, attach_hub, take_pending

T = TypeVar("T")

# Units per transaction at most: one batch holds the loop for a few milliseconds.
MAX_BATCH = 64


@dataclass
class _Unit(Generic[T]):
    work: Callable[[WriteScope], T]
    future: asyncio.Future[T]
    result: Any = None
    error: BaseException | None = None
    events: list[Event] = field(default_factory=list)


def _fail(batch: list[_Unit[Any]], exc: Exception) -> None:
    """Every unit of `batch` failed with `exc` (unless it had failed on its own)."""
    for unit in batch:
        if unit.error is None:
            unit.error = exc
        unit.events.clear()


class _UnitScope:
    """One unit's part of a batch: a savepoint on the batch's connection.

    The savepoint is taken when the unit first asks for the connection. `commit`
    keeps the unit's work so far (it lands with the batch's COMMIT) and releases
    the savepoint (the next statement takes a new one); `rollback` undoes the work
    since, and puts back the audit chain's head the unit started from. Events wait
    in `events` for the batch's COMMIT. The savepoints are taken on the driver's
    connection directly: through a Session's nested transactions they cost as much
    as the rest of a unit, and on PostgreSQL each one is a round trip.
    """

    def __init__(self, conn: Connection, head: HeldHead) -> None:
        self._conn = conn
        driver = conn.connection.driver_connection  # the sqlite3 or psycopg connection
        assert driver is not None
        self._driver: Any = driver
        self._head = head
        self._mark = head.mark()
        self._open = False
        self.info: dict[Any, Any] = {HELD_HEAD_KEY: head}
        self.events: list[Event] = []

    def connection(self) -> Connection:
        if not self._open:
            self._driver.execute("SAVEPOINT signoff_unit")
            self._mark = self._head.mark()
            self._open = True
        return self._conn

    def commit(self) -> None:
        self.events.extend(take_pending(self))
        if self._open:
            self._driver.execute("RELEASE signoff_unit")
            self._open = False

    def rollback(self) -> None:
        take_pending(self)
        if self._open:
            self._driver.execute("ROLLBACK TO signoff_unit")
            self._head.restore(self._mark)

    def close(self) -> None:
        """End the unit; what it did not commit is undone."""
        self.rollback()
        if self._open:
            self._driver.execute("RELEASE signoff_unit")
            self._open = False


class WriteRunner:
    """Runs units of write work for the API; see the module docstring."""

    def __init__(self, engine: Engine, hub: EventHub) -> None:
        self.engine = engine
        self.hub = hub
        self._turn: WriteTurn | None = write_turn_of(engine)
        self._postgresql = is_postgresql(str(engine.url))
        self._queue: list[_Unit[Any]] = []
        # The batch waiting for the turn in a thread, if any: later units queue behind it.
        self._waiting: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[WriteScope], T]) -> T:
        """The result of `work(scope)` once its transaction has committed."""
        if self._turn is None and not self._postgresql:
            return await anyio.to_thread.run_sync(self._run_alone, work)
        loop = asyncio.get_running_loop()
        unit: _Unit[T] = _Unit(work, loop.create_future())
        self._queue.append(unit)
        if len(self._queue) == 1 and self._waiting is None:
            # Units that arrive before the loop gets back to this join the batch.
            loop.call_soon(self._flush)
        return await unit.future

    def _run_alone(self, work: Callable[[WriteScope], T]) -> T:
        with session_scope(self.engine) as session:
            attach_hub(session, self.hub)
            return work(session)

    def _flush(self) -> None:
        if self._waiting is not None or not self._queue:
            return
        loop = asyncio.get_running_loop()
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        if self._try_commit(batch):
            self._settle(batch)
            if self._queue:
                loop.call_soon(self._flush)
            return
        # Another thread or process is writing, or this is PostgreSQL: off the loop.
        self._waiting = loop.create_task(self._commit_when_free(batch))

    def _try_commit(self, batch: list[_Unit[Any]]) -> bool:
        """Commit `batch` on the loop now if SQLite's turn is free; False if not."""
        if self._turn is None or not self._turn.try_acquire():
            return False
        try:
            self._commit(batch)
        finally:
            self._turn.release()
        return True

    async def _commit_when_free(self, batch: list[_Unit[Any]]) -> None:
        turn = self._turn

        def commit() -> None:
            if turn is None:
                self._commit(batch)
                return
            with turn.held():
                self._commit(batch)

        try:
            await anyio.to_thread.run_sync(commit)
        except Exception as exc:  # the turn could not be taken: the batch did not run
            _fail(batch, exc)
        finally:
            self._waiting = None
        self._settle(batch)
        self._flush()

    def _commit(self, batch: list[_Unit[Any]]) -> None:
        """Run the batch's units in savepoints of one transaction and commit it."""
        try:
            with self.engine.connect() as conn, conn.begin():
                head = take_head(conn)
                for unit in batch:
                    self._run_unit(conn, head, unit)
                store_head(conn, head)
                relay = self.hub.relay
                if relay is not None:
                    events = [evt for unit in batch for evt in unit.events]
                    if events:
                        relay(conn, events)
        except Exception as exc:  # BEGIN, the relay or COMMIT failed: nothing of the batch stays
            _fail(batch, exc)

    def _run_unit(self, conn: Connection, head: HeldHead, unit: _Unit[Any]) -> None:
        scope = _UnitScope(conn, head)
        # Its events are published by `_settle`; the hub's in-transaction hooks need it.
        attach_hub(scope, self.hub)
        try:
            unit.result = unit.work(scope)
        except Exception as exc:
            unit.error = exc
        finally:
            scope.close()
        # Also when the unit then failed: what it committed before (a late decision's
        # expiry) lands with the batch, so its events must go out too.
        unit.events = scope.events

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
