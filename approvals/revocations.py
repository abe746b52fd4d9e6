"""Ends what a revoked token still holds in this process: its cache entry and its websockets.

A token is revoked by setting `revoked_at` on its row, possibly by another process
(the CLI, another replica; `signoff tokens rotate` revokes the old secret the same
way). One watcher per service process looks every `interval` seconds for tokens
revoked lately or past their `expires_at`, forgets them in the TokenCache (so the
next use reads the table and is refused) and ends every websocket subscription
they authorised (the socket then closes with 1008). It also ends dashboard
subscriptions whose sign-in has expired. Half a second between looks keeps a
revocation made elsewhere under the one-second promise.

It reads in a read-only session: on SQLite that never takes the write turn, so a
busy writer cannot delay a revocation and the watcher cannot delay a writer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from approvals.db import read_session
from approvals.live_events import EventHub, Subscriber
from approvals.models import ApiToken, utcnow
from approvals.tokens import TokenCache, hash_token

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 0.5
# Each look goes back this far before the previous one: `revoked_at` is the revoking
# process's clock at the time of the update, which may commit later and on a
# clock that is a little off. Looking again at a token that is already dealt with
# costs nothing, and it also catches a socket or cache entry that slipped in
# between its owner's read of the still-live row and the revocation.
OVERLAP = timedelta(seconds=60)

REVOKED_REASON = "the API token was revoked"
TOKEN_EXPIRED_REASON = "the API token expired"
EXPIRED_REASON = "the dashboard sign-in expired"


def revoked_since(engine: Engine, horizon: datetime) -> set[str]:
    """Hashes of the tokens revoked after `horizon`.

    `revoked_at` has no index: the table holds one row per token people made, and
    the tokens revoked within the overlap are a handful."""
    with read_session(engine) as session:
        rows = session.exec(
            select(ApiToken.token_hash).where(col(ApiToken.revoked_at) > horizon)
        ).all()
    return set(rows)


def expired_by(engine: Engine, now: datetime) -> frozenset[str]:
    """Hashes of the unrevoked tokens whose `expires_at` has passed.

    Tokens that expire are few (people make them), and an expired one can be
    revoked to leave this set."""
    with read_session(engine) as session:
        rows = session.exec(
            select(ApiToken.token_hash).where(
                col(ApiToken.expires_at) <= now, col(ApiToken.revoked_at).is_(None)
            )
        ).all()
    return frozenset(rows)


def ended_since(
    engine: Engine, horizon: datetime, now: datetime
) -> tuple[set[str], frozenset[str]]:
    """(revoked since `horizon`, expired by `now`) token hashes: one thread hop for both."""
    return revoked_since(engine, horizon), expired_by(engine, now)


class RevocationWatcher:
    """Polls for revoked tokens and ends what they authorised in this process."""

    def __init__(
        self,
        engine: Engine,
        hub: EventHub,
        cache: TokenCache,
        *,
        interval: float = INTERVAL_SECONDS,
    ) -> None:
        self.engine = engine
        self.hub = hub
        self.cache = cache
        self.interval = interval
        # Nothing revoked before the process started can have a socket or a cache
        # entry here, so the first look reaches back only by the overlap.
        self._last_look = utcnow()
        # Hashes of tokens past their expiry, as of the last look. The token lookup
        # reads only `revoked_at`, so authentication also refuses these
        # (`is_expired`); an expiry is noticed within `interval` seconds.
        self.expired: frozenset[str] = frozenset()

    def is_expired(self, token: str) -> bool:
        """True for a token past its expiry; free while no token has expired."""
        return bool(self.expired) and hash_token(token) in self.expired

    async def run(self) -> None:
        """Look every `interval` seconds until cancelled; a failed look is retried."""
        while True:
            try:
                await self.look()
            except Exception as exc:  # the database may be away for a while: keep trying
                log.warning("could not check for revoked tokens: %r", exc)
            await asyncio.sleep(self.interval)

    async def look(self) -> int:
        """One pass; returns how many subscriptions it ended."""
        started = utcnow()
        # The default executor, not the API's thread pool: a flood of requests
        # waiting for threads must not hold back a revocation.
        revoked, expired_now = await asyncio.to_thread(
            ended_since, self.engine, self._last_look - OVERLAP, started
        )
        self._last_look = started
        expired = set(expired_now - self.expired)  # newly expired: end what they hold
        self.expired = expired_now
        if revoked or expired:
            self.cache.forget(revoked | expired)
        now = time.time()

        def reason_to_end(sub: Subscriber) -> str | None:
            if sub.token_hash is not None and sub.token_hash in revoked:
                return REVOKED_REASON
            if sub.token_hash is not None and sub.token_hash in expired:
                return TOKEN_EXPIRED_REASON
            if sub.expires_at is not None and sub.expires_at <= now:
                return EXPIRED_REASON
            return None

        ended = self.hub.end_where(reason_to_end)
        if ended:
            log.info("ended %d websocket subscription(s) whose token was revoked or expired", ended)
        return ended
