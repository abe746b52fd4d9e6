"""The service's garbage collector: young generations as usual, full passes on a clock."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator

import pytest

from approvals.collector import Collector
from approvals.malloc_arenas import cap_arenas


class Node:
    """A container that can sit in a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_no_full_collection_starts_by_itself_but_one_runs_on_the_clock(restored: None) -> None:
    collector = Collector(full_every=0.3)
    collector.install()
    try:
        # Cyclic garbage that outlived the young generations: only a full pass frees it.
        first, second = Node(), Node()
        first.other, second.other = second, first
        gone = weakref.ref(first)
        gc.collect(1)
        gc.collect(1)  # now in the oldest generation
        del first, second
        full_before = gc.get_stats()[2]["collections"]
        # Many objects that live on, as held calls do: left alone, the collector
        # would start full passes over them.
        kept = [Node() for _ in range(300_000)]
        assert gc.get_stats()[2]["collections"] == full_before
        assert gone() is not None  # no full pass came to free it
        deadline = time.monotonic() + 5
        while gone() is not None or collector.full_collections < 1:
            assert time.monotonic() < deadline, "the clock's full pass did not run"
            time.sleep(0.05)
        assert collector.full_collections >= 1
        del kept
    finally:
        collector.uninstall()
    assert gc.get_threshold()[2] < 1000  # handed back


def test_malloc_arenas_are_capped_on_glibc() -> None:
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert cap_arenas()
