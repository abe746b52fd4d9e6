"""The one write path: every state change, from every channel, is a unit of work here.

A unit of work is a function of a `db.WriteScope` (or, for work written with the
ORM, of a `Session`) that does one change and commits it (a `lifecycle` call, a
token issued, an outbox lease taken). The API, the dashboard, Slack, the CLI, the
sweeper and the outbox worker all hand their units to a `Store`; its events go
to the hub only after the transaction that holds them has committed, and a unit
or a commit that fails publishes nothing of what it rolled back. Reads never come
here: they use `Store.read` (`db.read_session`), which takes no write lock.

Only one writer runs at a time anyway: on SQLite the file has one write lock,
and on PostgreSQL every write appends to the audit chain, whose head row
(`audit_chain_head`) one transaction at a time may hold. Holding it once per
unit made every unit queue on that row, each waiting for a thread to be
scheduled in turn; holding it once per batch does not. A commit costs about as much
as the rest of a unit (every index page touched is written to the WAL), and
handing work to a thread and back cost more than the unit itself, because the
thread and the loop take turns at the GIL. So units given to `run` on the event
loop are run in batches, on the loop thread: the units that arrived during one
turn of the loop run one after another in one transaction, each in its own
SAVEPOINT, and one COMMIT makes them all durable.
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

Code without an event loop (the CLI, a worker thread) calls `run_now`: the same
transaction, savepoint and publication code with a batch of one, waiting for
the write turn in the calling thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio.to_thread
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from approvals.audit.record import HELD_HEAD_KEY, HeldHead, store_head, take_head
from approvals.db import WriteScope, WriteTurn, read_session, write_turn_of
from approvals.live_events import EventHub, LiveEvent, attach_hub, take_pending

T = TypeVar("T")

# Units per transaction at most: one batch holds the loop for a few milliseconds.
MAX_BATCH = 64


@dataclass
class _Unit(Generic[T]):
    work: Callable[[Any], T]
    # Where the caller waits for the answer; None for `run_now`, which answers itself.
    future: asyncio.Future[T] | None
    # True: `work` takes an ORM `Session` (see `_SessionUnit`).
    orm: bool = False
    result: Any = None
    error: BaseException | None = None
    events: list[LiveEvent] = field(default_factory=list)


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
        self.events: list[LiveEvent] = []

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


class _SessionUnit:
    """A unit written with the ORM (tokens, Slack cards, the sweeper's queries): a
    `Session` on the batch's connection whose transactions are savepoints in the
    batch's. Its commit keeps its events for the batch's COMMIT; its rollback drops
    them and puts back the chain's head, as `_UnitScope` does. Only such units pay
    for the Session's savepoints; the hot paths use `_UnitScope`."""

    def __init__(self, conn: Connection, head: HeldHead) -> None:
        self._head = head
        self._mark = head.mark()
        self.events: list[LiveEvent] = []
        self.session = Session(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        self.session.info[HELD_HEAD_KEY] = head
        event.listen(self.session, "after_begin", self._began)
        event.listen(self.session, "after_commit", self._committed)
        event.listen(self.session, "after_rollback", self._rolled_back)

    def _began(self, *_: object) -> None:
        self._mark = self._head.mark()

    def _committed(self, _session: Session) -> None:
        self.events.extend(take_pending(self.session))

    def _rolled_back(self, _session: Session) -> None:
        take_pending(self.session)
        self._head.restore(self._mark)

    def close(self) -> None:
        """End the unit; what it did not commit is undone."""
        if self.session.in_transaction():
            self.session.rollback()
        self.session.close()


class Store:
    """Runs every channel's units of write work; see the module docstring.

    `hub` hears the committed events (none for a CLI, which has no listeners)."""

    def __init__(self, engine: Engine, hub: EventHub | None = None) -> None:
        self.engine = engine
        self.hub = hub
        self._turn: WriteTurn | None = write_turn_of(engine)
        self._queue: list[_Unit[Any]] = []
        # The batch waiting for the turn in a thread, if any: later units queue behind it.
        self._waiting: asyncio.Task[None] | None = None

    def read(self) -> AbstractContextManager[Session]:
        """A session for reads only: it never takes the write turn or SQLite's write lock."""
        return read_session(self.engine)

    async def run(self, work: Callable[[WriteScope], T]) -> T:
        """The result of `work(scope)` once its transaction has committed (on the loop)."""
        return await self._submit(_Unit(work, asyncio.get_running_loop().create_future()))

    async def run_orm(self, work: Callable[[Session], T]) -> T:
        """`run` for work written with the ORM: it is given a `Session`."""
        loop = asyncio.get_running_loop()
        return await self._submit(_Unit(work, loop.create_future(), orm=True))

    def run_now(self, work: Callable[[WriteScope], T]) -> T:
        """`run` for code without an event loop (a thread, the CLI): waits here for the
        write turn, commits `work` as a batch of one, publishes, answers. Never call it
        on the event loop's thread: it blocks."""
        return self._run_now(_Unit(work, None))

    def run_orm_now(self, work: Callable[[Session], T]) -> T:
        """`run_now` for work written with the ORM."""
        return self._run_now(_Unit(work, None, orm=True))

    def _run_now(self, unit: _Unit[T]) -> T:
        if self._turn is None:
            self._commit([unit])
        else:
            with self._turn.held():
                self._commit([unit])
        self._publish([unit])
        if unit.error is not None:
            raise unit.error
        result: T = unit.result
        return result

    async def _submit(self, unit: _Unit[T]) -> T:
        assert unit.future is not None
        self._queue.append(unit)
        if len(self._queue) == 1 and self._waiting is None:
            # Units that arrive before the loop gets back to this join the batch.
            asyncio.get_running_loop().call_soon(self._flush)
        return await unit.future

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
                relay = self.hub.relay if self.hub is not None else None
                if relay is not None:
                    events = [evt for unit in batch for evt in unit.events]
                    if events:
                        relay(conn, events)
        except Exception as exc:  # BEGIN, the relay or COMMIT failed: nothing of the batch stays
            _fail(batch, exc)

    def _run_unit(self, conn: Connection, head: HeldHead, unit: _Unit[Any]) -> None:
        scope: _UnitScope | _SessionUnit
        if unit.orm:
            scope = _SessionUnit(conn, head)
            given: WriteScope = scope.session
        else:
            scope = given = _UnitScope(conn, head)
        # Its events are published by `_publish`; the hub's in-transaction hooks need it.
        attach_hub(given, self.hub)
        try:
            unit.result = unit.work(given)
        except Exception as exc:
            unit.error = exc
        finally:
            scope.close()
        # Also when the unit then failed: what it committed before (a late decision's
        # expiry) lands with the batch, so its events must go out too.
        unit.events = scope.events

    def _publish(self, batch: list[_Unit[Any]]) -> None:
        """After the commit: the batch's events to the hub (none if the commit failed)."""
        if self.hub is None:
            return
        for unit in batch:
            for evt in unit.events:
                self.hub.publish(evt)

    def _settle(self, batch: list[_Unit[Any]]) -> None:
        """After the commit: publish the batch's events and answer its callers."""
        self._publish(batch)
        for unit in batch:
            if unit.future is None or unit.future.done():  # the caller went away
                continue
            if unit.error is not None:
                unit.future.set_exception(unit.error)
            else:
                unit.future.set_result(unit.result)
