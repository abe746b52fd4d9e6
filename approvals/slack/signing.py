"""Slack's request signing, checked on the raw body before anything is parsed."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from slack_sdk.signature import SignatureVerifier

# Slack's own rule: refuse requests whose timestamp is more than 5 minutes off.
WINDOW_SECONDS = 300


class SignatureGuard:
    """Slack's request signing, plus a memory of recent signatures against replays.

    The memory lives in this process: behind several replicas, a replay sent to
    another replica within the window is caught only by the decision rules
    (a second vote is refused), not here.
    """

    def __init__(self, signing_secret: str, clock: Callable[[], float] = time.time) -> None:
        self.verifier = SignatureVerifier(signing_secret)
        self.clock = clock
        self._seen: dict[str, float] = {}
        self._order: deque[tuple[float, str]] = deque()

    def check(self, body: bytes, timestamp: str | None, signature: str | None) -> str | None:
        """None when the request is Slack's and new; else why it is refused."""
        if not timestamp or not signature:
            return "X-Slack-Request-Timestamp and X-Slack-Signature are required"
        try:
            sent = int(timestamp)
        except ValueError:
            return "X-Slack-Request-Timestamp is not a Unix time"
        now = self.clock()
        if abs(now - sent) > WINDOW_SECONDS:
            return "the request is stale: its timestamp is more than 5 minutes off"
        # slack-sdk compares str digests (TypeError on a non-ASCII signature) and
        # decodes the body as UTF-8: either failing means the request is not Slack's.
        try:
            valid = signature.isascii() and self.verifier.is_valid(body, timestamp, signature)
        except UnicodeDecodeError:
            valid = False
        if not valid:
            return "the signature does not match"
        self._forget(now)
        if signature in self._seen:
            return "the request was already received (replayed)"
        expires = sent + WINDOW_SECONDS + 1
        self._seen[signature] = expires
        self._order.append((expires, signature))
        return None

    def _forget(self, now: float) -> None:
        while self._order and self._order[0][0] < now:
            _, old = self._order.popleft()
            self._seen.pop(old, None)
