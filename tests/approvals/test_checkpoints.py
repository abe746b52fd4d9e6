"""The service copies SQLite's WAL into the database file itself, off the event loop."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from approvals.checkpoints import WalCheckpointer
from approvals.db import make_engine, session_scope
from approvals.migrate import upgrade
from approvals.tokens import create_token


def _tokens_in_database_file(path: Path) -> int:
    """Rows of api_tokens in the database file itself, not counting the WAL."""
    with sqlite3.connect(f"file:{path}?immutable=1", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM api_tokens").fetchone()[0])


def test_commits_leave_the_wal_alone_and_the_checkpointer_copies_it(tmp_path: Path) -> None:
    path = tmp_path / "service.db"
    upgrade(f"sqlite:///{path}")
    engine = make_engine(f"sqlite:///{path}", background_checkpoints=True)
    # Enough commits to pass SQLite's default checkpoint threshold (1,000 pages).
    for n in range(400):
        with session_scope(engine) as session:
            create_token(session, name=f"gateway-{n}", role="gateway")
    assert (tmp_path / "service.db-wal").stat().st_size > 1000 * 4096
    assert _tokens_in_database_file(path) == 0

    checkpointer = WalCheckpointer(engine, interval=0.05)
    checkpointer.start()
    try:
        deadline = time.monotonic() + 10
        while checkpointer.checkpoints < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        checkpointer.stop()
    assert _tokens_in_database_file(path) == 400
    engine.dispose()
