"""Readiness: the database answers and its schema is at the migrations' head.

/healthz says the process lives; /readyz says it can do its work. A load
balancer may probe every second from many places, so an answer is reused for
`max_age` seconds (at most 10, as promised) and only one probe at a time reads
the database; the others wait for it and share its answer.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine

from approvals.migrate import alembic_config


@dataclass(frozen=True)
class Readiness:
    ready: bool
    # What is wrong when not ready; the schema revision found when ready.
    detail: str


def migrations_head() -> str:
    """The revision the code's migrations end at."""
    heads = ScriptDirectory.from_config(alembic_config("")).get_heads()
    return ",".join(sorted(heads))


def check(engine: Engine, head: str) -> Readiness:
    """Read the schema revision; never raises (an unreachable database is an answer)."""
    try:
        # Read-only: on SQLite it must not queue for the write lock behind a burst.
        with engine.execution_options(signoff_read_only=True).connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "alembic_version" in reason:
            return Readiness(False, "the database has no schema yet (run `signoff db upgrade`)")
        return Readiness(False, f"the database does not answer: {reason[:200]}")
    found = ",".join(sorted(str(r[0]) for r in rows))
    if found != head:
        return Readiness(
            False,
            f"the database schema is at {found or 'no revision'}, not {head} "
            "(run `signoff db upgrade`)",
        )
    return Readiness(True, found)


class ReadinessProbe:
    """Answers /readyz from a check at most `max_age` seconds old."""

    def __init__(self, engine: Engine, *, max_age: float = 2.0) -> None:
        self.engine = engine
        self.max_age = min(max_age, 10.0)
        self._head: str | None = None
        self._answer: Readiness | None = None
        self._checked = 0.0
        self._lock = asyncio.Lock()

    async def __call__(self) -> Readiness:
        if self._answer is not None and time.monotonic() - self._checked < self.max_age:
            return self._answer
        async with self._lock:
            if self._answer is not None and time.monotonic() - self._checked < self.max_age:
                return self._answer
            # Its own thread, not the API's pool: a flood of requests waiting for
            # threads must not make a healthy service look unready.
            self._answer = await asyncio.to_thread(self._check)
            self._checked = time.monotonic()
            return self._answer

    def _check(self) -> Readiness:
        if self._head is None:
            self._head = migrations_head()
        return check(self.engine, self._head)
