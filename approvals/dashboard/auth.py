"""Dashboard sign-in: HMAC-signed session cookies and CSRF tokens.

The cookie holds `base64url(json{token id, expiry, nonce}).base64url(hmac)`,
signed with SIGNOFF_SECRET_KEY (a random per-process key when unset, so a
restart signs everyone out). Every request re-checks that the API token behind
the session still exists and is not revoked. The CSRF token is an HMAC of the
session's nonce: pages carry it in a hidden field or a meta tag, and every
state-changing request must send it back (form field `csrf_token` or header
`X-CSRF-Token`). The sign-in form has its own CSRF token, bound to a short-lived
pre-session cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import col, select
from starlette.requests import HTTPConnection

from approvals.db import read_session
from approvals.models import ApiToken, Role, utcnow

log = logging.getLogger(__name__)

SESSION_COOKIE = "signoff_session"
LOGIN_COOKIE = "signoff_login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
# Roles that may sign in; only approvers and admins see decision buttons.
DASHBOARD_ROLES = frozenset({Role.APPROVER.value, Role.AUDITOR.value, Role.ADMIN.value})
DECIDING_ROLES = frozenset({Role.APPROVER.value, Role.ADMIN.value})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _same(presented: str, expected: str) -> bool:
    """Constant-time equality for any presented text.

    `hmac.compare_digest` raises TypeError on a str with non-ASCII characters, and a
    cookie or header carries whatever bytes the client sends (0xff arrives as "ÿ"):
    compare UTF-8 bytes, so a forged value is refused instead of answering 500."""
    return hmac.compare_digest(
        presented.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def secret_key_from(configured: str | None) -> bytes:
    """The configured key, or a random one for this process (logged, since it signs out on
    restart and does not work across replicas)."""
    if configured:
        return configured.encode()
    log.warning(
        "SIGNOFF_SECRET_KEY is not set: dashboard sessions use a random per-process key "
        "and end when the service restarts"
    )
    return secrets.token_bytes(32)


@dataclass(frozen=True)
class DashboardSession:
    """A signed-in person: the API token they signed in with, and their CSRF token."""

    token_id: int
    name: str
    role: str
    nonce: str
    expires_at: int
    csrf: str

    @property
    def may_decide_at_all(self) -> bool:
        return self.role in DECIDING_ROLES


class Signer:
    """Signs and verifies session cookies and CSRF tokens with one secret key."""

    def __init__(self, key: bytes, *, lifetime_seconds: float) -> None:
        self._key = key
        self.lifetime_seconds = lifetime_seconds

    def _mac(self, purpose: str, message: str) -> str:
        material = f"{purpose}|{message}".encode("utf-8", "surrogatepass")
        digest = hmac.new(self._key, material, hashlib.sha256).digest()
        return _b64(digest)

    def issue(self, token_id: int) -> str:
        """A new session cookie value for the API token `token_id`."""
        payload = {
            "t": token_id,
            "e": int(time.time() + self.lifetime_seconds),
            "n": secrets.token_urlsafe(16),
        }
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._mac('session', body)}"

    def verify(self, cookie: str) -> tuple[int, int, str] | None:
        """(token id, expiry, nonce) of a valid, unexpired cookie, else None."""
        body, _, mac = cookie.partition(".")
        if not body or not _same(mac, self._mac("session", body)):
            return None
        try:
            payload = json.loads(_unb64(body))
            token_id, expires, nonce = int(payload["t"]), int(payload["e"]), str(payload["n"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires <= time.time():
            return None
        return token_id, expires, nonce

    def csrf_for(self, nonce: str) -> str:
        return self._mac("csrf", nonce)

    def check_csrf(self, nonce: str, presented: str | None) -> bool:
        return bool(presented) and _same(str(presented), self.csrf_for(nonce))

    # The sign-in form: a random pre-session cookie plus a form field derived from it.
    def login_csrf_for(self, login_nonce: str) -> str:
        return self._mac("login", login_nonce)

    def check_login_csrf(self, login_nonce: str | None, presented: str | None) -> bool:
        if not login_nonce or not presented:
            return False
        return _same(str(presented), self.login_csrf_for(login_nonce))


def load_session(conn: HTTPConnection, engine: Engine, signer: Signer) -> DashboardSession | None:
    """The signed-in person of a request or websocket, from the session cookie."""
    cookie = conn.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    verified = signer.verify(cookie)
    if verified is None:
        return None
    token_id, expires, nonce = verified
    # A read: page loads and failed sign-ins never queue behind SQLite's writers.
    with read_session(engine) as session:
        row = session.exec(
            select(ApiToken).where(ApiToken.id == token_id, col(ApiToken.revoked_at).is_(None))
        ).first()
    if row is None or row.role not in DASHBOARD_ROLES:
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():  # the token expired
        return None
    return DashboardSession(
        token_id=token_id,
        name=row.name,
        role=row.role,
        nonce=nonce,
        expires_at=expires,
        csrf=signer.csrf_for(nonce),
    )
