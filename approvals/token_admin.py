"""Token lifecycle for operators: create (optionally expiring), list, revoke, rotate.

The CLI (`signoff tokens`) and the admin API (/api/v1/tokens) both call these, so
the rules live once:

- A name is the identity shown everywhere, so at most one live token has it:
  creating a name that a live token has is refused (409 `name_taken`). A revoked
  or expired token's name may be given again.
- Rotating a name revokes its live token and issues a new secret with the same
  name, role and expiry; services refuse the old secret within a second
  (approvals/revocations.py), as for any revocation.
- Secrets are shown once, when made; nothing lists them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlmodel import Session, col, or_, select

from approvals.errors import Conflict, NotFound
from approvals.models import ApiToken, Role, utcnow
from approvals.tokens import check_identity, new_token

# Longer-lived credentials should be rotated instead.
MAX_LIFETIME = timedelta(days=3650)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class TokenState(enum.StrEnum):
    LIVE = "live"
    EXPIRED = "expired"
    REVOKED = "revoked"


class TokenInfo(BaseModel):
    """A token as listed: everything but its secret (`prefix` tells tokens apart)."""

    name: str
    role: Role
    prefix: str
    state: TokenState
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: ApiToken, now: datetime) -> TokenInfo:
        return cls(
            name=row.name,
            role=Role(row.role),
            prefix=row.prefix,
            state=state_of(row, now),
            created_at=row.created_at,
            expires_at=row.expires_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )


def state_of(row: ApiToken, now: datetime) -> TokenState:
    if row.revoked_at is not None:
        return TokenState.REVOKED
    if row.expires_at is not None and row.expires_at <= now:
        return TokenState.EXPIRED
    return TokenState.LIVE


def parse_lifetime(text: str) -> timedelta:
    """`90d`, `12h`, `30m`, `45s`, `2w` or plain seconds; ValueError says what is wrong."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 30m, 12h, 90d or 3600")
    lifetime = timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    if lifetime <= timedelta(0) or lifetime > MAX_LIFETIME:
        raise ValueError(f"{text!r} must be more than 0 and at most 3650 days")
    return lifetime


def _live(session: Session, name: str, now: datetime) -> Sequence[ApiToken]:
    return session.exec(
        select(ApiToken).where(
            ApiToken.name == name,
            col(ApiToken.revoked_at).is_(None),
            or_(col(ApiToken.expires_at).is_(None), col(ApiToken.expires_at) > now),
        )
    ).all()


def issue(
    session: Session, *, name: str, role: str, expires_in: timedelta | None = None
) -> tuple[TokenInfo, str]:
    """Create a token; returns what is listed about it and its secret (shown once)."""
    check_identity(name, role)
    now = utcnow()
    if _live(session, name, now):
        raise Conflict(
            f"a live token named {name!r} exists; revoke or rotate it instead",
            code="name_taken",
        )
    expires_at = now + expires_in if expires_in else None
    row, secret = new_token(name, role, created_at=now, expires_at=expires_at)
    session.add(row)
    session.commit()
    return TokenInfo.of(row, now), secret


def list_tokens(session: Session) -> list[TokenInfo]:
    """Every token, newest first: live, expired and revoked."""
    now = utcnow()
    rows = session.exec(
        select(ApiToken).order_by(col(ApiToken.created_at).desc(), col(ApiToken.id).desc())
    ).all()
    return [TokenInfo.of(row, now) for row in rows]


def revoke(session: Session, name: str) -> list[str]:
    """Revoke the live token(s) named `name`; returns their hashes (to forget in caches)."""
    now = utcnow()
    rows = _live(session, name, now)
    if not rows:
        raise NotFound(f"no live token is named {name!r}", code="token_not_found")
    for row in rows:
        row.revoked_at = now
        session.add(row)
    session.commit()
    return [row.token_hash for row in rows]


def rotate(session: Session, name: str) -> tuple[TokenInfo, str, list[str]]:
    """A new secret for `name` (same role and expiry); the old one is revoked.

    Returns what is listed about the new token, its secret, and the old hashes."""
    now = utcnow()
    rows = _live(session, name, now)
    if not rows:
        raise NotFound(f"no live token is named {name!r}", code="token_not_found")
    newest = max(rows, key=lambda r: r.created_at)
    for row in rows:
        row.revoked_at = now
        session.add(row)
    fresh, secret = new_token(name, newest.role, created_at=now, expires_at=newest.expires_at)
    session.add(fresh)
    session.commit()
    return TokenInfo.of(fresh, now), secret, [row.token_hash for row in rows]
