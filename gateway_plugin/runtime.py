"""One gateway runtime for every host: the parts a gate needs, built and closed in one place.

`signoff gateway` (stdio and HTTP), the FastMCP middleware, the ContextForge
plugin and the Docker interceptor each hold a `GatewayRuntime` per identity (the
gateway token whose requests it creates) and only translate their host's call
into a `ToolCall` and the gate's `Verdict` back:

- the policy: the service's, followed by `PolicySource` (a local file is only a
  fallback), read by the gate at every call; a host inside the service reads the
  service's own policy instead (`policy_feed`);
- the service client, the decision push (websocket; long-poll while it is down)
  and the audit reporter of that token;
- the gate over them: rate limits, hold, redaction, grants, requests, claims.

`start` is for hosts that must not come up without a policy (the CLI); `begin` for
hosts without a start-up step of their own (it never raises: until a policy
arrives every call is refused). `aclose` sends what is queued, briefly, and closes
every connection. `RuntimePool` keeps one runtime per identity for hosts that
serve many (the Docker interceptor), sharing one set of rate limits.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import httpx

from gateway_plugin.audit_reporter import AuditReporter
from gateway_plugin.decision_stream import DecisionStream
from gateway_plugin.gate import DEFAULT_HOLD_SECONDS, ApprovalGate, PolicyFeed
from gateway_plugin.policy import Policy, RateLimiter
from gateway_plugin.policy_source import PolicySource
from gateway_plugin.service_client import ServiceClient

__all__ = ["GatewayRuntime", "RuntimePool"]

# Makes the HTTP client of a host that reaches the service its own way (in-process).
HttpFactory = Callable[[], httpx.AsyncClient]


class GatewayRuntime:
    """The gate of one identity, with its policy source, service connections and audit."""

    def __init__(
        self,
        service_url: str,
        token: str,
        *,
        policy: str | os.PathLike[str] | None = None,
        policy_feed: PolicyFeed | None = None,
        agent: str | None = None,
        hold: float = DEFAULT_HOLD_SECONDS,
        audit_allowed: bool = False,
        push: bool = True,
        http: HttpFactory | None = None,
    ) -> None:
        """`policy`: a local fallback file (PolicyError when it is invalid: a host never
        starts on one); `policy_feed`: the policy of a host inside the service, instead of
        fetching it; `push`: follow decisions over the websocket; `http`: the service's
        HTTP client (default: over the network)."""
        self.service = ServiceClient(service_url, token, http=http() if http else None)
        self.source = None if policy_feed else PolicySource(self.service, local=policy)
        self.decisions = DecisionStream(service_url, token) if push else None
        # A client the host makes is closed here (the reporter closes only its own).
        self._audit_http = http() if http else None
        self.audit = AuditReporter(service_url, token, http=self._audit_http)
        self.gate = ApprovalGate(
            policy_feed or self._followed,
            self.service,
            agent=agent,
            token=token,
            hold_seconds=hold,
            decisions=self.decisions,
            audit=self.audit,
            audit_allowed=audit_allowed,
        )

    def _followed(self) -> Policy:
        assert self.source is not None
        return self.source.policy

    async def start(self) -> None:
        """Fetch the policy and connect: PolicyUnavailable when there is none to enforce."""
        if self.source is not None:
            await self.source.start()
        if self.decisions is not None:
            self.decisions.start()

    async def follow(self) -> None:
        """Follow the service's policy until cancelled (after `start`, in a task group)."""
        if self.source is not None:
            await self.source.follow()

    async def begin(self) -> None:
        """`start` then `follow` in the background, for hosts without a task group; waits
        for the first fetch (once, whoever calls first) and never raises."""
        if self.decisions is not None:
            self.decisions.start()  # idempotent
        if self.source is not None:
            await self.source.begin()

    async def aclose(self) -> None:
        """Send what is queued, briefly (never waiting on a down service), and close."""
        with anyio.move_on_after(3, shield=True):
            await self.gate.drain(timeout=2)
            await self.audit.aclose(timeout=2)
        if self._audit_http is not None:
            await self._audit_http.aclose()
        if self.source is not None:
            await self.source.aclose()
        if self.decisions is not None:
            await self.decisions.aclose()
        await self.service.aclose()


class RuntimePool:
    """One runtime per identity (kept while in use, the least recently used idle one closed
    beyond `limit`), all counting against one set of rate limits: counters follow the
    caller, not the runtime object."""

    def __init__(self, limit: int = 64) -> None:
        self._runtimes: OrderedDict[str, GatewayRuntime] = OrderedDict()
        self._busy: Counter[str] = Counter()
        self._limit = limit
        self._closing: set[asyncio.Task[None]] = set()
        self.limiter = RateLimiter()

    def __len__(self) -> int:
        return len(self._runtimes)

    @asynccontextmanager
    async def use(
        self, identity: str, build: Callable[[], GatewayRuntime]
    ) -> AsyncIterator[GatewayRuntime]:
        """The runtime of `identity` (built on first use); it is not closed while in use."""
        runtime = self._runtimes.get(identity)
        if runtime is None:
            runtime = build()
            runtime.gate.limiter = self.limiter
            self._runtimes[identity] = runtime
            await runtime.begin()
        self._runtimes.move_to_end(identity)
        self._busy[identity] += 1
        self._evict()
        try:
            yield runtime
        finally:
            self._busy[identity] -= 1
            if self._busy[identity] <= 0:
                del self._busy[identity]

    def _evict(self) -> None:
        for identity in list(self._runtimes):  # least recently used first
            if len(self._runtimes) <= self._limit:
                return
            if self._busy[identity] == 0:
                runtime = self._runtimes.pop(identity)
                task = asyncio.get_running_loop().create_task(runtime.aclose())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        runtimes = list(self._runtimes.values())
        self._runtimes.clear()
        await asyncio.gather(*(runtime.aclose() for runtime in runtimes), *self._closing)
