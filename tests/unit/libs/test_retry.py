"""libs.retry: bounded, jittered retries of transient errors only, decided by type."""

from __future__ import annotations

import time

import pytest

from libs.errors import InvalidArgument, Unavailable
from libs.retry import RetryPolicy

FAST = RetryPolicy(attempts=4, initial_s=0.01, max_s=0.02, jitter_s=0.01)


async def test_a_transient_error_is_retried_until_it_passes() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Unavailable("registry down")
        return "ok"

    assert await FAST.call("flaky", flaky) == "ok"
    assert calls == 3


async def test_attempts_are_bounded_and_the_last_error_is_raised() -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise Unavailable(f"down {calls}")

    with pytest.raises(Unavailable, match="down 4"):
        await FAST.call("down", down)
    assert calls == 4


async def test_a_permanent_error_is_not_retried() -> None:
    calls = 0

    async def bad() -> None:
        nonlocal calls
        calls += 1
        raise InvalidArgument("use_case", "nope")

    with pytest.raises(InvalidArgument):
        await FAST.call("bad", bad)
    assert calls == 1


def test_the_deadline_bounds_the_time_too() -> None:
    policy = RetryPolicy(attempts=1000, initial_s=0.05, max_s=0.05, jitter_s=0.0, deadline_s=0.3)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        for attempt in policy.blocking("slow"):
            with attempt:
                raise Unavailable("still down")
    assert time.monotonic() - started < 1.0


def test_a_loops_backoff_grows_gives_up_and_starts_over_after_a_success() -> None:
    backoff = RetryPolicy(attempts=3, initial_s=0.1, max_s=0.3, jitter_s=0.0).backoff("flush")
    assert [backoff.failed(Unavailable("down")) for _ in range(2)] == [0.1, 0.2]
    assert backoff.failures == 2
    with pytest.raises(Unavailable, match="still down"):
        backoff.failed(Unavailable("still down"))
    backoff.succeeded()
    assert backoff.failures == 0
    assert backoff.failed(Unavailable("down")) == 0.1


def test_a_loops_backoff_honours_the_deadline() -> None:
    backoff = RetryPolicy(attempts=None, initial_s=0.05, max_s=0.05, jitter_s=0.0, deadline_s=0.2).backoff(
        "x"
    )
    started = time.monotonic()
    with pytest.raises(Unavailable):
        while True:
            time.sleep(backoff.failed(Unavailable("down")))
    # No round starts after the deadline: stop_before_delay counts the coming wait.
    assert 0.1 <= time.monotonic() - started < 0.5


def test_unbounded_attempts_never_give_up_by_count() -> None:
    backoff = RetryPolicy(attempts=None, initial_s=0.0, max_s=0.0, jitter_s=0.0).backoff("probe")
    for _ in range(1000):
        assert backoff.failed(Unavailable("down")) == 0.0
