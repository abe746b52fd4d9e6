"""Reload the policy file while the gateway runs; an invalid edit keeps the last good policy."""

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


async def watch_policy(
    path: str | os.PathLike[str],
    apply: Callable[[Policy], None],
    *,
    interval: float = 1.0,
) -> None:
    """Poll `path` every `interval` seconds; `apply` each new valid policy until cancelled."""
    file = Path(path)
    last = _stamp(file)
    while True:
        await anyio.sleep(interval)
        stamp = _stamp(file)
        if stamp is None or stamp == last:
            continue
        last = stamp
        try:
            policy = load_policy(file)
        except PolicyError as exc:
            log.error("policy not reloaded, keeping the last good one: %s", exc)
            continue
        apply(policy)
        log.warning("policy reloaded from %s", file)
