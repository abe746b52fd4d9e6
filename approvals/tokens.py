"""API tokens: created once, shown once, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from approvals.db import read_session
from approvals.errors import BadRequest
from approvals.models import ApiToken, Role, utcnow

TOKEN_PREFIX = "so_"
# Ours are 46 characters; the slack is for nothing but leniency. Anything longer, or
# not ASCII, is refused before it costs a hash or a database read.
MAX_TOKEN_LENGTH = 128
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


def hash_token(token: str) -> str:
    """The stored form of a token; tokens are random, so a plain SHA-256 is enough."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_identity(name: str, role: str) -> None:
    """Refuse a token name or role that cannot be stored (BadRequest)."""
    if role not in {r.value for r in Role}:
        allowed = ", ".join(r.value for r in Role)
        raise BadRequest(f"role must be one of {allowed}", code="invalid_role")
    if not _NAME.match(name):
        raise BadRequest(
            "name must be 1-128 characters: letters, digits, and . _ @ - (not first)",
            code="invalid_name",
        )


def new_token(
    name: str, role: str, *, created_at: datetime, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """A new, unsaved token row and its secret (shown once; only its hash is stored)."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name,
        role=role,
        token_hash=hash_token(secret),
        prefix=secret[:10],
        created_at=created_at,
        expires_at=expires_at,
    )
    return row, secret


def create_token(session: Session, *, name: str, role: str) -> tuple[ApiToken, str]:
    """Store a new token for `name` with `role`; returns the row and the secret (shown once)."""
    check_identity(name, role)
    row, secret = new_token(name, role, created_at=utcnow())
    session.add(row)
    session.commit()
    return row, secret


def plausible_token(token: str) -> bool:
    """False for what cannot be one of our tokens (so no database read is spent on it)."""
    return len(token) <= MAX_TOKEN_LENGTH and token.startswith(TOKEN_PREFIX) and token.isascii()


def authenticate(session: Session, token: str) -> ApiToken | None:
    """The live token row for a presented secret, or None."""
    if not plausible_token(token):
        return None
    return session.exec(
        select(ApiToken).where(
            ApiToken.token_hash == hash_token(token), col(ApiToken.revoked_at).is_(None)
        )
    ).first()


class TokenCache:
    """Remembers valid tokens for `ttl` seconds so API calls need not read the table each time.

    Only valid tokens are kept, so a flood of bad ones can neither grow it nor push
    the good ones out. A revoked token is forgotten by approvals.revocations within seconds; `ttl`
    bounds how long a revocation could go unnoticed without it.
    """

    def __init__(self, ttl: float = 5.0, max_entries: int = 4096) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, str, str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def cached(self, token: str) -> tuple[str, str] | None:
        """(name, role) of a token checked less than `ttl` seconds ago; None if unknown."""
        if not plausible_token(token):
            return None
        return self._fresh(hash_token(token), time.monotonic())

    def _fresh(self, key: str, now: float) -> tuple[str, str] | None:
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1], hit[2]
        return None

    def forget(self, token_hashes: Iterable[str]) -> None:
        """Drop these tokens (by hash) so that their next use reads the table again."""
        for key in token_hashes:
            self._entries.pop(key, None)

    def lookup(self, engine: Engine, token: str) -> tuple[str, str] | None:
        """(name, role) of a live token, or None; reads without taking the write turn."""
        if not plausible_token(token):
            return None
        key = hash_token(token)
        now = time.monotonic()
        hit = self._fresh(key, now)
        if hit is not None:
            return hit
        found = live_token(engine, key)
        if found is None:
            self._entries.pop(key, None)
            return None
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (now + self.ttl, *found)
        return found


_LIVE_TOKEN_SQL = "SELECT name, role FROM api_tokens WHERE token_hash = {} AND revoked_at IS NULL"
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def live_token(engine: Engine, token_hash: str) -> tuple[str, str] | None:
    """(name, role) of the live token with this hash, or None.

    Every failed login pays for this read, so it is one indexed SELECT on a pooled
    driver connection: through the ORM it cost ~25 times as much Python, held the
    GIL from the event loop, and let a flood of bad tokens slow every other client.
    On SQLite the driver connection is in autocommit, so the read takes no lock that
    a writer waits for (nor waits for one); on PostgreSQL the pool rolls back the
    read's implicit transaction when the connection is returned."""
    placeholder = _PLACEHOLDERS.get(engine.dialect.paramstyle)
    if placeholder is None:  # a driver we do not know the parameter style of
        with read_session(engine) as session:
            row = session.exec(
                select(ApiToken).where(
                    ApiToken.token_hash == token_hash, col(ApiToken.revoked_at).is_(None)
                )
            ).first()
        return None if row is None else (row.name, row.role)
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        try:
            cursor.execute(_LIVE_TOKEN_SQL.format(placeholder), (token_hash,))
            found = cursor.fetchone()
        finally:
            cursor.close()
    finally:
        connection.close()
    return None if found is None else (str(found[0]), str(found[1]))
