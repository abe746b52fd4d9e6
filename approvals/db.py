"""Database engine and sessions: SQLite (WAL) by default, PostgreSQL in production."""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, create_engine


def is_sqlite(url: str) -> bool:
    """True when the URL names an SQLite database."""
    return url.startswith("sqlite")


def is_postgresql(url: str) -> bool:
    """True when the URL names a PostgreSQL database."""
    return url.startswith(("postgresql", "postgres:"))


def normalize_url(url: str) -> str:
    """Plain `postgresql://` (or `postgres://`) URLs use psycopg 3, the `postgres` extra."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def make_engine(url: str, *, background_checkpoints: bool = False) -> Engine:
    """Create the engine for `url`, tuned for concurrent use by the service.

    `background_checkpoints`: on SQLite, commits never checkpoint the WAL; the
    caller runs an `approvals.checkpoints.WalCheckpointer` instead (the service does).
    """
    url = normalize_url(url)
    if is_sqlite(url):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
            pool_size=20,
            max_overflow=20,
        )
        _tune_sqlite(engine, autocheckpoint=not background_checkpoints)
        return engine
    # PostgreSQL: READ COMMITTED; state changes are compare-and-set on `version`
    # (lifecycle.changes.transition) and the audit head is locked with FOR UPDATE, so no
    # stricter level (and no serialization retries) is needed.
    return create_engine(
        url,
        isolation_level="READ COMMITTED",
        pool_pre_ping=True,
        pool_size=20,
        max_overflow=20,
    )


def _tune_sqlite(engine: Engine, *, autocheckpoint: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        if not autocheckpoint:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    # In WAL mode a deferred transaction that reads and then writes fails at once
    # with SQLITE_BUSY if another writer committed in between (busy_timeout does
    # not apply). Taking the write lock up front makes writers queue instead.
    # Connections that only read (audit export and verify) opt out with
    # `execution_options(signoff_read_only=True)`: a deferred BEGIN reads a WAL
    # snapshot without the write lock, so a long export never stalls writers.
    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        read_only = conn.get_execution_options().get("signoff_read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


class WriteScope(Protocol):
    """What the business rules need of a transaction to write in.

    A unit of work of the store (approvals/store.py) is one: its `commit` and
    `rollback` end its savepoint rather than the batch's transaction. So is a
    `Session`.
    """

    @property
    def info(self) -> dict[Any, Any]:
        """Per-transaction notes (events waiting for the commit, the hub to tell)."""
        ...

    def connection(self) -> Connection:
        """The connection whose transaction this scope writes in."""
        ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


class WriteTurn:
    """One SQLite file's write turn, shared by every thread and process that writes it.

    SQLite admits one writer; the others wait in its busy handler, which sleeps in
    growing steps (up to 100 ms) and makes tail latency balloon under load. The
    turn hands over at once instead: a lock for this process's threads, then a
    file lock (`<database>-writer.lock`) for the other processes (more service
    processes on the same file, the CLI).
    """

    def __init__(self, database: str | None) -> None:
        # Re-entrant: a thread that already holds the turn may open another session
        # (SQLite itself then decides, as it would without the turn).
        self._threads = threading.RLock()
        self._depth = 0  # how deeply the owning thread holds it
        self._fd: int | None = None
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database).resolve()
            self._fd = os.open(f"{path}-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)

    def acquire(self) -> None:
        """Wait for the turn."""
        self._take(blocking=True)

    def try_acquire(self) -> bool:
        """Take the turn if nobody else holds it; never waits."""
        return self._take(blocking=False)

    def _take(self, *, blocking: bool) -> bool:
        if not self._threads.acquire(blocking=blocking):
            return False
        if self._depth == 0 and self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # only without blocking: another process writes
                self._threads.release()
                return False
            except BaseException:
                self._threads.release()
                raise
        self._depth += 1
        return True

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the turn for the block."""
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_WRITE_TURNS: weakref.WeakKeyDictionary[Engine, WriteTurn] = weakref.WeakKeyDictionary()
_TURNS_LOCK = threading.Lock()


def write_turn_of(engine: Engine) -> WriteTurn | None:
    """The write turn of an SQLite engine's file; None for other stores (they need none)."""
    if not is_sqlite(str(engine.url)):
        return None
    turn = _WRITE_TURNS.get(engine)
    if turn is None:
        with _TURNS_LOCK:
            turn = _WRITE_TURNS.get(engine)
            if turn is None:
                turn = _WRITE_TURNS[engine] = WriteTurn(engine.url.database)
                weakref.finalize(engine, turn.close)
    return turn


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session for reads only: on SQLite it reads a snapshot without the write lock."""
    with Session(engine.execution_options(signoff_read_only=True)) as session:
        yield session


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A bare session for writing, closed (and rolled back if uncommitted) on exit: for
    migrations, tests and benches setting up data. It publishes no events; the
    service's channels write through `approvals.store.Store` instead.

    On SQLite it holds the file's write turn for its whole scope (its transactions
    take SQLite's write lock anyway, with `BEGIN IMMEDIATE`): keep the work in it
    short, and read with `read_session`.
    """
    turn = write_turn_of(engine)
    with (
        turn.held() if turn is not None else nullcontext(),
        Session(engine, expire_on_commit=False) as session,
    ):
        if is_postgresql(str(engine.url)):
            event.listen(session, "after_begin", _head_first)
        yield session


def _head_first(_session: Session, _transaction: Any, conn: Connection) -> None:
    """On PostgreSQL a writing session locks the audit chain's head before anything
    else, as the API's batches do (approvals/audit/record.py: one lock order)."""
    from approvals.audit.record import lock_head_first  # audit imports db

    lock_head_first(conn)
