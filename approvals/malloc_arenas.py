"""glibc's malloc arenas: two for the whole service instead of up to eight per core.

glibc gives each thread that allocates while another holds an arena a new arena
of its own (up to 8 x cores), and memory freed into one arena is not reused by
the others. The service has a pool of worker threads (database reads, the first
read of each long-poll) besides the event loop, so with thousands of held calls
the arenas fragment: bench/held_calls.py measured a peak of 359-378 MB with the
default and 311-316 MB with two arenas, the figures otherwise the same. Threads
then share arenas; the loop, which does most of the allocating, is not slowed
by that in the benchmarks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# mallopt's parameter number for the arena cap (glibc's malloc.h: M_ARENA_MAX).
M_ARENA_MAX = -8
ARENAS = 2


def cap_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's arenas at `arenas` (call before threads start); False where that
    cannot be done (another C library), which changes nothing else."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_ARENA_MAX, arenas) == 1)
    if not done:
        log.warning("could not cap malloc arenas at %d", arenas)
    return done
