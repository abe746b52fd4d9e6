"""When each token was last used, kept without a write per request.

A request whose token was not in the token cache read the table anyway; that
use is noted in memory, and a background task writes the noted names'
`last_used_at` once a second in one UPDATE. So `last used` is exact to within
the cache's lifetime (a token in steady use is re-read every few seconds), and
the create and decide routes never pay for it.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import col

from approvals.db import WriteScope
from approvals.models import ApiToken, utcnow
from approvals.store import Store

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0


class TokenUsage:
    """Names of tokens used since the last flush; `note` is safe from any thread."""

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._lock = threading.Lock()

    def note(self, name: str) -> None:
        with self._lock:
            self._names.add(name)

    def take(self) -> set[str]:
        with self._lock:
            names, self._names = self._names, set()
        return names

    def flush(self, engine: Engine) -> int:
        """Write `last_used_at` for the noted names; returns how many names."""
        names = self.take()
        if not names:
            return 0

        def write(scope: WriteScope) -> None:
            scope.connection().execute(
                update(ApiToken)
                .where(col(ApiToken.name).in_(sorted(names)), col(ApiToken.revoked_at).is_(None))
                .values(last_used_at=utcnow())
            )
            scope.commit()

        Store(engine).run_now(write)
        return len(names)

    async def run(self, engine: Engine, interval: float = FLUSH_SECONDS) -> None:
        """Flush every `interval` seconds until cancelled; a failed flush is not retried
        (the next use notes the token again)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.flush, engine)
            except Exception as exc:
                log.warning("could not record when tokens were last used: %r", exc)
