"""Where a gateway's policy comes from: the approval service, its one source of truth.

The service serves the policy it enforces at `GET /api/v1/policy`, versioned by a
digest of its document. A gateway fetches it before it serves anything, then
polls every `interval` seconds (with If-None-Match, so an unchanged policy costs
a 304); `policy` is what to enforce now (the gate of a `GatewayRuntime` reads it
at every call), and an optional `apply` callback hears of each new version.

A local policy file (`signoff gateway --policy FILE`) is a fallback, never an
override:

- the service has a policy: the gateway enforces it; a local file of another
  version is reported with a loud warning naming both versions, at start and
  whenever either changes;
- the service cannot be reached at start: the gateway starts on the local file,
  says so, and switches to the service's policy as soon as it answers;
- the service has no policy (`no_policy`) when the gateway starts: the local
  file, with a warning.

Once the service has served a policy, its last one stands for good: while the
service is away, and also when it (or whatever answers in its place) says it has
none. A `no_policy` answer must never downgrade a running gateway to a file that
may be stale or laxer.

With no local file, a gateway that gets no policy from the service does not
start (`PolicyUnavailable`): it fails closed. A fetched policy that does not
compile here is ignored and the last good one stays; so does the last policy
while the service is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import Literal

import anyio

from gateway_plugin.policy import Policy, PolicyError, parse_policy
from gateway_plugin.policy_reload import PolicyFile
from gateway_plugin.service_client import ServiceClient, ServiceRefused, ServiceUnavailable

__all__ = ["DEFAULT_INTERVAL_SECONDS", "PolicySource", "PolicyUnavailable", "waiting_policy"]

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 2.0
WAITING_REASON = "Signoff has not received the approval service's policy yet (fail closed)"

Apply = Callable[[Policy], None]
Problem = Literal["unreachable", "refused", "no_policy", "invalid"]


class PolicyUnavailable(Exception):
    """Neither the service nor a local file gives a policy to enforce."""


def waiting_policy() -> Policy:
    """Refuses every call: what a host enforces before any policy has arrived."""
    refuse_all = {"action": "deny", "reason": WAITING_REASON}
    document = {"version": "1", "default": "deny", "tools": {"*": refuse_all}}
    return parse_policy(document, "<waiting for the service's policy>")


class PolicySource:
    """The policy one gateway enforces, kept in step with the approval service."""

    def __init__(
        self,
        service: ServiceClient,
        *,
        local: str | os.PathLike[str] | None = None,
        interval: float = DEFAULT_INTERVAL_SECONDS,
    ) -> None:
        self.service = service
        self.interval = interval
        self._file = PolicyFile(local) if local is not None else None
        # PolicyError propagates: a gateway never starts on an invalid local file.
        self.local: Policy | None = self._file.load() if self._file is not None else None
        # The service's policy (last good copy) and the version it last sent, good or not.
        self.remote: Policy | None = None
        self._etag: str | None = None
        self._problem: tuple[Problem, str] | None = None
        self._reported: Problem | None = None
        self._mismatch: tuple[str, str] | None = None
        # What the host enforces now: the local file, or a refuse-all until one arrives.
        self.policy: Policy = self.local or waiting_policy()
        self._on_service = False  # whether `policy` came from the service
        self._started = False
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None

    @property
    def enforcing_service(self) -> bool:
        """True while the service's own policy is in force."""
        return self.remote is not None and self.policy is self.remote

    async def start(self, apply: Apply | None = None) -> Policy:
        """Fetch the service's policy once and settle what to enforce.

        PolicyUnavailable when there is nothing to enforce (no local file)."""
        await self._poll()
        if self._choose() is None:
            assert self._problem is not None
            raise PolicyUnavailable(
                f"no policy to enforce: {self._problem[1]}, and no local policy file is "
                "configured; refusing to start (fail closed)"
            )
        self._settle(apply)
        self._started = True
        return self.policy

    async def follow(self, apply: Apply | None = None) -> None:
        """Poll the service (and the local file) until cancelled, applying each change."""
        while True:
            await anyio.sleep(self.interval)
            await self.refresh(apply)

    async def refresh(self, apply: Apply | None = None) -> None:
        """One round of `follow`: re-read the local file if it changed, ask the service."""
        if self._file is not None:
            changed = self._file.reload()
            if changed is not None and (
                self.local is None or changed.version != self.local.version
            ):
                self.local = changed
        await self._poll()
        self._settle(apply)

    async def begin(self, apply: Apply | None = None) -> None:
        """For hosts without a task group of their own: `start`, then `follow` in a
        background task. Waits for the first fetch (once, whoever calls first) and
        never raises: with nothing to enforce, calls stay refused while it polls."""
        if self._task is None:
            self._ready = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._background(apply, self._ready), name="signoff-policy-source"
            )
        assert self._ready is not None
        await self._ready.wait()

    async def aclose(self) -> None:
        """Stop the background polling started by `begin`."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _background(self, apply: Apply | None, ready: asyncio.Event) -> None:
        try:
            await self.start(apply)
        except PolicyUnavailable as exc:
            log.error("%s; every call is refused until the service answers", exc)
        finally:
            ready.set()
        await self.follow(apply)

    async def _poll(self) -> None:
        """Ask the service once; keep its policy, or note why there is none."""
        url = self.service.base_url
        try:
            answer = await self.service.policy(self._etag)
        except ServiceUnavailable as exc:
            self._problem = ("unreachable", str(exc))
            return
        except ServiceRefused as exc:
            if exc.code == "no_policy":
                # It may come back with the very version we had: fetch it in full then.
                self._etag = None
                self._problem = ("no_policy", f"the approval service at {url} has no policy")
            else:
                self._problem = ("refused", f"the approval service at {url} refused: {exc}")
            return
        if answer is None:  # unchanged (304): whatever we concluded about it stands
            if self._problem is not None and self._problem[0] != "invalid":
                self._problem = None
            return
        self._etag = answer.version
        if self.remote is not None and self.remote.version == answer.version:
            self._problem = None
            return
        try:
            self.remote = parse_policy(answer.policy, f"{url} ({answer.source})")
        except PolicyError as exc:
            log.error(
                "the approval service's policy version %s does not compile here, "
                "keeping the last good one: %s",
                answer.version,
                exc,
            )
            self._problem = (
                "invalid",
                f"the approval service's policy version {answer.version} does not compile "
                f"here ({exc})",
            )
            return
        self._problem = None

    def _choose(self) -> Policy | None:
        if self.remote is not None:
            # Once the service has spoken, its last policy stands: while it is away, and
            # also when it (or whatever answers in its place) says it has none. A local
            # file, perhaps stale or laxer, is only for before the service first answers.
            return self.remote
        return self.local

    def _settle(self, apply: Apply | None) -> None:
        chosen = self._choose()
        # Where the policy in force came from, for the announcement; None at start.
        was: Literal["service", "local"] | None = None
        if self._started:
            was = "service" if self._on_service else "local"
        if chosen is not None and chosen is not self.policy:
            self.policy = chosen
            self._on_service = chosen is self.remote
            if apply is not None:
                apply(chosen)
            self._announce(was)
        elif not self._started:
            self._announce(None)
        self._report_problem()
        self._check_mismatch()

    def _announce(self, was: Literal["service", "local"] | None) -> None:
        """Say which policy is now in force and why (`was`: where the last one came from)."""
        url, version = self.service.base_url, self.policy.version
        if self.enforcing_service:
            if was is None:
                log.info(
                    "enforcing the policy of the approval service at %s, version %s", url, version
                )
            elif was == "local":
                log.warning(
                    "the approval service at %s answers: now enforcing its policy, version %s",
                    url,
                    version,
                )
            else:
                log.warning(
                    "the approval service's policy changed: now enforcing version %s", version
                )
            return
        assert self._file is not None  # not the service's policy, so the local file's
        where = f"the local policy file {self._file.path}, version {version}"
        if was == "local":
            log.warning("policy reloaded: enforcing %s", where)
            return
        why = self._problem[1] if self._problem is not None else "the service gave no policy"
        if self._problem is not None and self._problem[0] == "unreachable":
            log.warning(
                "%s: starting on %s; the service's policy replaces it as soon as it answers",
                why,
                where,
            )
        else:
            log.warning("%s: enforcing %s", why, where)

    def _report_problem(self) -> None:
        """Say once when the service stops (or resumes) answering while its policy is in force."""
        if not self.enforcing_service:
            self._reported = None  # `_announce` said why the local file is in force
            return
        assert self.remote is not None
        # A version that does not compile was logged when it came.
        kind = self._problem[0] if self._problem is not None else None
        kind = None if kind == "invalid" else kind
        if kind == self._reported:
            return
        if self._problem is not None and kind is not None:
            log.warning(
                "cannot refresh the policy (%s); keeping version %s",
                self._problem[1],
                self.remote.version,
            )
        else:
            log.warning(
                "the approval service at %s answers again; its policy is version %s",
                self.service.base_url,
                self.remote.version,
            )
        self._reported = kind

    def _check_mismatch(self) -> None:
        """The loud warning: a local file that is not what the service enforces."""
        pair = None
        local, remote = self.local, self.remote
        if local and remote and self.enforcing_service and local.version != remote.version:
            pair = (local.version, remote.version)
        if pair is not None and pair != self._mismatch:
            assert self._file is not None
            log.warning(
                "POLICY MISMATCH: the local policy file %s is version %s, but the approval "
                "service at %s enforces version %s; this gateway enforces the service's "
                "version %s (make the file match, or drop --policy)",
                self._file.path,
                pair[0],
                self.service.base_url,
                pair[1],
                pair[1],
            )
        self._mismatch = pair
