"""Copies SQLite's write-ahead log into the database file from a background thread.

By default SQLite checkpoints inside whichever commit takes the WAL past 1,000
pages. In the service that commit usually runs on the event loop (the group
commit in approvals/store.py), which then copies pages and waits for fsync while
no request is served. The service's engine turns that off
(`make_engine(..., background_checkpoints=True)`) and this thread runs PASSIVE
checkpoints every `interval` seconds instead: they never block readers or
writers, and SQLite lets go of the GIL while it copies, so the work runs on
another core. Other processes (the CLI) keep SQLite's default.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)


class WalCheckpointer:
    """Runs `PRAGMA wal_checkpoint(PASSIVE)` on its own connection until stopped."""

    def __init__(self, engine: Engine, interval: float = 0.2) -> None:
        self.engine = engine
        self.interval = interval
        self.checkpoints = 0  # completed runs, for tests and curious operators
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="signoff-checkpoints", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the checkpoint in progress, if any."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        # A raw connection: through SQLAlchemy a statement would open a transaction
        # (BEGIN IMMEDIATE on this engine), and SQLite refuses to checkpoint in one.
        raw = self.engine.raw_connection()
        try:
            driver: Any = raw.driver_connection
            while not self._stop.wait(self.interval):
                try:
                    driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except Exception:
                    log.exception("WAL checkpoint failed; trying again in %.1fs", self.interval)
        finally:
            raw.close()
