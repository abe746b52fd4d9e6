"""Reload a policy file while its host runs; an invalid edit keeps the last good policy."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import anyio

from gateway_plugin.policy import Policy, PolicyError, load_policy

log = logging.getLogger(__name__)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


class PolicyFile:
    """A policy file, and whether it changed since it was last read.

    `check`: the host's own checks of a loaded policy (raising PolicyError), run
    after the engine's (the service checks that webhook secrets are set)."""

    def __init__(
        self, path: str | os.PathLike[str], check: Callable[[Policy], None] | None = None
    ) -> None:
        self.path = Path(path)
        self.check = check
        self._stamp = _stamp(self.path)

    def _load(self) -> Policy:
        policy = load_policy(self.path)
        if self.check is not None:
            self.check(policy)
        return policy

    def load(self) -> Policy:
        """Read the file now (PolicyError when it is invalid: a host never starts on one)."""
        # Stamp first: an edit racing this read is seen by the next `reload`.
        self._stamp = _stamp(self.path)
        return self._load()

    def reload(self) -> Policy | None:
        """The new policy when the file changed and is valid, else None (an invalid edit
        is logged and the caller keeps its last good policy)."""
        stamp = _stamp(self.path)
        if stamp is None or stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            return self._load()
        except PolicyError as exc:
            log.error("policy not reloaded, keeping the last good one: %s", exc)
            return None


async def watch_policy(
    path: str | os.PathLike[str],
    apply: Callable[[Policy], None],
    *,
    interval: float = 1.0,
    check: Callable[[Policy], None] | None = None,
) -> None:
    """Poll `path` every `interval` seconds; `apply` each new valid policy (one `check`
    accepts too) until cancelled."""
    file = PolicyFile(path, check)
    while True:
        await anyio.sleep(interval)
        policy = file.reload()
        if policy is not None:
            apply(policy)
            log.warning("policy reloaded from %s", file.path)
