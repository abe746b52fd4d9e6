"""Rate limits: scopes, shared counters, sliding windows, and nothing consumed on refusal."""

from __future__ import annotations

import pytest

from gateway_plugin.policy import LimitSpec, Policy, RateLimiter, parse_policy


def limit(
    max_calls: int, scope: str = "grant", counter: str = "c", window: str = "minute"
) -> LimitSpec:
    return LimitSpec.model_validate(
        {"counter": counter, "window": window, "max": max_calls, "scope": scope}
    )


def admitted(
    limiter: RateLimiter,
    limits: list[LimitSpec],
    n: int,
    *,
    grant: str = "g1",
    session: str | None = None,
) -> int:
    """How many of n calls at t=0 get through."""
    return sum(
        limiter.check_and_consume(limits, grant=grant, session=session, now=0.0) is None
        for _ in range(n)
    )


def test_grant_scope_counts_each_caller_separately() -> None:
    limiter = RateLimiter()
    limits = [limit(3, "grant")]

    assert admitted(limiter, limits, 5, grant="alice-agent") == 3
    assert admitted(limiter, limits, 5, grant="bob-agent") == 3


def test_session_scope_counts_each_session_separately() -> None:
    limiter = RateLimiter()
    limits = [limit(2, "session")]

    assert admitted(limiter, limits, 3, grant="g", session="s1") == 2
    assert admitted(limiter, limits, 3, grant="g", session="s2") == 2


def test_session_scope_without_a_session_falls_back_to_the_grant() -> None:
    limiter = RateLimiter()
    limits = [limit(2, "session")]

    assert admitted(limiter, limits, 3, grant="g1") == 2
    assert admitted(limiter, limits, 3, grant="g2") == 2


def test_global_scope_is_one_bucket_for_everyone() -> None:
    limiter = RateLimiter()
    limits = [limit(4, "global")]

    assert admitted(limiter, limits, 3, grant="a", session="s1") == 3
    assert admitted(limiter, limits, 3, grant="b", session="s2") == 1


def test_limits_naming_the_same_counter_share_a_bucket_across_tools() -> None:
    policy = parse_policy(
        {
            "version": "1",
            "tools": {
                "read_file": {"limits": [{"counter": "fs", "window": "minute", "max": 3}]},
                "write_file": {"limits": [{"counter": "fs", "window": "minute", "max": 3}]},
            },
        }
    )
    limiter = RateLimiter()
    reads = policy.evaluate("read_file", {}).limits
    writes = policy.evaluate("write_file", {}).limits

    assert limiter.check_and_consume(reads, grant="g", session=None, now=0) is None
    assert limiter.check_and_consume(writes, grant="g", session=None, now=1) is None
    assert limiter.check_and_consume(reads, grant="g", session=None, now=2) is None
    refused = limiter.check_and_consume(writes, grant="g", session=None, now=3)

    assert refused is not None
    assert refused.limit.counter == "fs"


def test_the_window_slides_so_calls_free_up_one_by_one() -> None:
    limiter = RateLimiter()
    limits = [limit(2, window="minute")]

    def call(at: float) -> bool:
        return limiter.check_and_consume(limits, grant="g", session=None, now=at) is None

    assert call(0.0)
    assert call(30.0)
    assert not call(59.0)
    assert call(60.5)  # the call at t=0 left the window
    assert not call(61.0)  # the one at t=30 is still in it
    assert call(90.5)


def test_no_burst_across_a_window_boundary() -> None:
    limiter = RateLimiter()
    limits = [limit(3, window="second")]

    through = [
        limiter.check_and_consume(limits, grant="g", session=None, now=t) is None
        for t in (0.9, 0.95, 0.99, 1.01, 1.05)
    ]

    assert through == [True, True, True, False, False]


def test_a_refused_call_consumes_nothing_from_any_bucket() -> None:
    limiter = RateLimiter()
    roomy = limit(100, counter="roomy")
    tight = limit(1, counter="tight")

    assert limiter.check_and_consume([roomy, tight], grant="g", session=None, now=0) is None
    for _ in range(5):
        assert limiter.check_and_consume([roomy, tight], grant="g", session=None, now=1) is not None

    # Only the first call was counted against "roomy": 99 more fit.
    assert admitted(limiter, [roomy], 150, grant="g") == 99


def test_the_violation_says_which_limit_and_when_to_retry() -> None:
    limiter = RateLimiter()
    limits = [limit(2, counter="end_codegen_session_rate")]
    limiter.check_and_consume(limits, grant="g", session=None, now=10.0)
    limiter.check_and_consume(limits, grant="g", session=None, now=20.0)

    violation = limiter.check_and_consume(limits, grant="g", session=None, now=25.0)

    assert violation is not None
    assert violation.limit == limits[0]
    assert violation.retry_after_seconds == pytest.approx(45.0)
    assert "end_codegen_session_rate" in violation.message
    assert "2 calls per minute per grant" in violation.message
    assert "retry in 45s" in violation.message


def test_the_first_exceeded_limit_is_reported() -> None:
    limiter = RateLimiter()
    limits = [limit(5, counter="tool"), limit(1, counter="all", scope="global")]
    limiter.check_and_consume(limits, grant="g", session=None, now=0)

    violation = limiter.check_and_consume(limits, grant="other", session=None, now=0)

    assert violation is not None and violation.limit.counter == "all"


def test_no_limits_means_no_bookkeeping() -> None:
    limiter = RateLimiter()

    assert limiter.check_and_consume([], grant="g", session=None) is None
    assert len(limiter) == 0


def test_idle_buckets_are_dropped_so_memory_stays_bounded() -> None:
    limiter = RateLimiter(sweep_every=10)
    limits = [limit(1, window="second")]
    for caller in range(9):
        limiter.check_and_consume(limits, grant=f"g{caller}", session=None, now=0.0)
    assert len(limiter) == 9

    limiter.check_and_consume(limits, grant="late", session=None, now=5.0)

    assert len(limiter) == 1


def test_a_full_bucket_never_grows_past_its_max() -> None:
    limiter = RateLimiter()
    limits = [limit(3)]
    for _ in range(1000):
        limiter.check_and_consume(limits, grant="g", session=None, now=1.0)

    bucket = next(iter(limiter._buckets.values()))
    assert len(bucket.stamps) == 3


def test_design_policy_limits_end_codegen_session_to_30_a_minute(design_policy: Policy) -> None:
    limits = design_policy.evaluate("end_codegen_session", {}).limits
    limiter = RateLimiter()

    results = [
        limiter.check_and_consume(limits, grant="agent", session="s", now=float(i))
        for i in range(31)
    ]

    assert all(result is None for result in results[:30])
    assert results[30] is not None
    assert results[30].limit.counter == "end_codegen_session_rate"


def test_concurrent_callers_never_overshoot_a_global_limit() -> None:
    import threading

    limiter = RateLimiter()
    limits = [limit(50, "global")]
    admitted_counts: list[int] = []
    start = threading.Barrier(8)

    def caller(name: str) -> None:
        start.wait()
        admitted_counts.append(admitted(limiter, limits, 100, grant=name))

    threads = [threading.Thread(target=caller, args=(f"g{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(admitted_counts) == 50


def test_a_limit_repeated_by_an_entry_and_all_tools_is_listed_and_counted_once() -> None:
    shared = {"counter": "all", "window": "minute", "max": 2}
    policy = parse_policy(
        {"version": "1", "all_tools": {"limits": [shared]}, "tools": {"t": {"limits": [shared]}}}
    )
    limits = policy.evaluate("t", {}).limits

    assert limits == (limit(2, counter="all"),)
    assert admitted(RateLimiter(), list(limits), 5) == 2
