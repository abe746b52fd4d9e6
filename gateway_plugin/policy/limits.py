"""In-memory rate limiting for policy `limits`.

Sliding-log algorithm: each bucket keeps the timestamps of the calls it
admitted within its window, so a limit of N per minute means at most N calls
in any 60-second span (no burst of 2N across a fixed-window boundary). A
bucket never holds more than `max` timestamps because a call over the limit is
not recorded, and expired timestamps and idle buckets are dropped, so memory
stays bounded by the number of active (counter, scope key) pairs.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from gateway_plugin.policy.durations import format_duration
from gateway_plugin.policy.results import LimitSpec

BucketKey = tuple[str, str, str | None]


class LimitViolation(BaseModel):
    """A call refused by a limit: which one, and when a retry can succeed."""

    model_config = ConfigDict(frozen=True)

    limit: LimitSpec
    retry_after_seconds: float
    message: str


class _Bucket:
    __slots__ = ("stamps", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self.stamps: deque[float] = deque()

    def prune(self, now: float) -> None:
        cutoff = now - self.window
        stamps = self.stamps
        while stamps and stamps[0] <= cutoff:
            stamps.popleft()


class RateLimiter:
    """Counts calls per (counter, scope key) and refuses those over a limit.

    Buckets are shared by every limit that names the same counter, across tools.
    Scope keys: `grant` uses the caller's grant, `session` the MCP session (the
    grant when the call has no session), `global` one bucket for everyone.
    A lock makes each check-and-consume atomic, for threads as for one event loop.
    """

    def __init__(self, *, sweep_every: int = 1024) -> None:
        self._buckets: dict[BucketKey, _Bucket] = {}
        self._lock = threading.Lock()
        self._sweep_every = sweep_every
        self._calls = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def check_and_consume(
        self,
        limits: Sequence[LimitSpec],
        *,
        grant: str,
        session: str | None,
        now: float | None = None,
    ) -> LimitViolation | None:
        """Consume one unit from every limit's bucket, or nothing and return the violation.

        `now` is seconds on a monotonic clock (default `time.monotonic()`); tests pass their own.
        """
        if not limits:
            return None
        at = time.monotonic() if now is None else now
        with self._lock:
            self._calls += 1
            if self._calls % self._sweep_every == 0:
                self._sweep(at)
            buckets: list[_Bucket] = []
            for limit in limits:
                bucket = self._bucket(limit, grant, session)
                bucket.prune(at)
                if len(bucket.stamps) >= limit.max:
                    return _violation(limit, bucket, at)
                buckets.append(bucket)
            # Two limits on one counter in the same call would otherwise count it twice.
            for bucket in {id(b): b for b in buckets}.values():
                bucket.stamps.append(at)
        return None

    def reset(self) -> None:
        """Forget every bucket (for a policy reload that changes limits, or for tests)."""
        with self._lock:
            self._buckets.clear()

    def _bucket(self, limit: LimitSpec, grant: str, session: str | None) -> _Bucket:
        if limit.scope == "global":
            subject: str | None = None
        elif limit.scope == "session" and session is not None:
            subject = session
        else:
            subject = grant
        scope = "session" if limit.scope == "session" and session is not None else limit.scope
        key: BucketKey = (limit.counter, scope, subject)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(limit.window_seconds)
        else:
            bucket.window = max(bucket.window, limit.window_seconds)
        return bucket

    def _sweep(self, now: float) -> None:
        idle = [
            key
            for key, b in self._buckets.items()
            if not b.stamps or b.stamps[-1] <= now - b.window
        ]
        for key in idle:
            del self._buckets[key]


def _violation(limit: LimitSpec, bucket: _Bucket, now: float) -> LimitViolation:
    stamps = bucket.stamps
    # The call can go through once enough old stamps fall out of the window to leave one slot.
    freeing = stamps[len(stamps) - limit.max] if len(stamps) >= limit.max else now
    retry = max(0.0, freeing + limit.window_seconds - now)
    per = "in total" if limit.scope == "global" else f"per {limit.scope}"
    message = (
        f"rate limit exceeded: counter {limit.counter!r} allows {limit.max} calls per "
        f"{limit.window} {per}; retry in {format_duration(round(retry, 1))}"
    )
    return LimitViolation(limit=limit, retry_after_seconds=retry, message=message)
