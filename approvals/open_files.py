"""The service's open-file limit: every held call waiting on it is a socket.

A gateway holds one connection per long-poll (or one websocket per many held
calls), and the service needs about 100 more descriptors for its database, log
and listening sockets. Distributions give processes a soft limit of 1024 and a
much larger hard limit; the soft one is what runs out. `signoff serve` raises the
soft limit to the hard limit at start: only the hard limit is the operator's
choice (README: "Holding many calls").
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

# Descriptors the service uses besides the held calls' sockets.
SPARE = 100


def raise_to_hard_limit() -> int:
    """Set the soft RLIMIT_NOFILE to the hard limit; the new soft limit (or the old one
    if the system refuses)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
        return soft
    return hard


def held_calls_room(limit: int) -> int:
    """How many calls can wait at once under an open-file limit of `limit`."""
    return max(0, limit - SPARE)
