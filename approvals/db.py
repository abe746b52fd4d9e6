"""Database engine and sessions: SQLite (WAL) by default, PostgreSQL in production."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
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
