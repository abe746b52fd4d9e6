"""Database engine and sessions: SQLite (WAL) by default, PostgreSQL in production."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

T = TypeVar("T")


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


def make_engine(url: str) -> Engine:
    """Create the engine for `url`, tuned for concurrent use by the service."""
    url = normalize_url(url)
    if is_sqlite(url):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
            pool_size=20,
            max_overflow=20,
        )
        _tune_sqlite(engine)
        return engine
    # PostgreSQL: READ COMMITTED; state changes are compare-and-set on `version`
    # (lifecycle._transition) and the audit head is locked with FOR UPDATE, so no
    # stricter level (and no serialization retries) is needed.
    return create_engine(
        url,
        isolation_level="READ COMMITTED",
        pool_pre_ping=True,
        pool_size=20,
        max_overflow=20,
    )


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
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


_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()


@contextmanager
def write_turn(engine: Engine) -> Iterator[None]:
    """Queue this process's writers on SQLite before they ask SQLite for its write lock.

    SQLite admits one writer; the others wait in its busy handler, which sleeps in
    growing steps (up to 100 ms) and makes tail latency balloon under load. A lock
    in the process hands the turn over at once. Other stores need no turn.
    """
    if not is_sqlite(str(engine.url)):
        yield
        return
    lock = _WRITE_LOCKS.setdefault(engine, threading.Lock())
    with lock:
        yield


class WriteRunner:
    """Runs units of write work, each in its own session and transaction scope.

    On SQLite every write runs on one dedicated thread, one after another: the
    store admits a single writer anyway, and handing the turn between many
    worker threads (a lock wake-up and a GIL hand-over per request) cost more
    than the writes. Other stores run writes concurrently in the worker pool.
    `prepare(session)` runs first in each session (the event hub attaches there).
    """

    def __init__(self, engine: Engine, prepare: Callable[[Session], None] | None = None) -> None:
        self.engine = engine
        self._prepare = prepare
        self._writer = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="signoff-writer")
            if is_sqlite(str(engine.url))
            else None
        )

    async def run(self, work: Callable[[Session], T]) -> T:
        """The result of `work(session)`, run off the event loop."""
        if self._writer is None:
            return await anyio.to_thread.run_sync(self._run, work)
        return await asyncio.wrap_future(self._writer.submit(self._run, work))

    def _run(self, work: Callable[[Session], T]) -> T:
        with write_turn(self.engine), session_scope(self.engine) as session:
            if self._prepare is not None:
                self._prepare(session)
            return work(session)

    def close(self) -> None:
        """Stop the writer thread once the queued work is done."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session for reads only: on SQLite it reads a snapshot without the write lock."""
    with Session(engine.execution_options(signoff_read_only=True)) as session:
        yield session


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that is closed (and rolled back if uncommitted) on exit."""
    with Session(engine, expire_on_commit=False) as session:
        yield session
