"""How the service runs Python's cyclic garbage collector: no long pauses while calls are held.

Every held call keeps about a hundred container objects alive for as long as it
waits (its connection, the coroutines of each middleware layer, closures, its
watch), so 10,000 held calls are about 800,000 objects. CPython 3.11 starts a
full collection, which walks every one of them and stops the event loop
meanwhile, each time a quarter more objects have lived long enough to reach
the oldest generation; with thousands of long-polls asking again every few
seconds that is every 2-3 s. bench/held_calls.py saw 300-900 ms pauses, which
alone made a decision take up to 1.5 s to reach its waiter on an idle machine
(freezing the survivors after each full pass still left 150-750 ms pauses).

So the young generations are collected as usual (short-lived cycles go within
milliseconds), and the full collection runs on a clock instead: every
`FULL_EVERY_SECONDS`, from a thread of its own. Objects that outlive the young
generations and are not in a cycle are freed by reference counting the moment
they are dropped, as always; only cyclic garbage that outlived the young
generations waits for the next full pass. What start-up built (modules, the
app, SQLAlchemy's and pydantic's caches) is frozen, so no pass walks it.
"""

from __future__ import annotations

import gc
import threading

# How often the oldest generation is collected.
FULL_EVERY_SECONDS = 300.0
# A gen2 threshold that is never reached: no full collection starts by itself.
_NEVER = 2**30


class Collector:
    """Collects the oldest generation every `full_every` seconds, and only then."""

    def __init__(self, full_every: float = FULL_EVERY_SECONDS) -> None:
        self.full_every = full_every
        self.full_collections = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._thresholds: tuple[int, int, int] | None = None

    def install(self) -> None:
        """Freeze what exists now, and take over the timing of full collections."""
        gc.freeze()
        self._thresholds = gc.get_threshold()
        young, middle, _ = self._thresholds
        gc.set_threshold(young, middle, _NEVER)
        self._thread = threading.Thread(target=self._run, name="signoff-gc", daemon=True)
        self._thread.start()

    def uninstall(self) -> None:
        """Stop the clock and give the collector its thresholds back."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None

    def _run(self) -> None:
        while not self._stop.wait(self.full_every):
            gc.collect()
            self.full_collections += 1
