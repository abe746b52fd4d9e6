"""The `Signoff-Signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=...]`.

Each v1 is HMAC-SHA256(secret, f"{t}.{raw body}") in lowercase hex, one per
secret in use: the environment variable a webhook names may hold several
secrets separated by commas while one is rotated, and each is used. Every
attempt is signed afresh with the time it is sent.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

HEADER = "Signoff-Signature"


def secrets_of(value: str | None) -> list[str]:
    """The secrets an environment variable's value holds (comma-separated; blanks dropped)."""
    if value is None:
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The lowercase hex HMAC-SHA256 of f"{timestamp}.{body}" under `secret`."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def header_value(secrets: Sequence[str], timestamp: int, body: bytes) -> str:
    """The header for `body` sent at `timestamp`, with one v1 per secret."""
    signed = ",".join(f"v1={signature(secret, timestamp, body)}" for secret in secrets)
    return f"t={timestamp},{signed}"


def verify(header: str, body: bytes, secret: str, *, now: float, tolerance: float = 300) -> bool:
    """Whether `header` signs `body` with `secret` within `tolerance` seconds of `now`
    (what a receiver does; see README)."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
