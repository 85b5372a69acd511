"""One retry policy for the whole factory, on tenacity: bounded, exponential, jittered.

Whatever retries (a consumer waiting on a dependency, a client calling another service,
a relay publishing its outbox) says *how often* with a :class:`RetryPolicy` and *what*
by exception type: only :data:`TRANSIENT` errors (a dependency that is down,
:class:`~libs.errors.Unavailable`) are retried, never by matching message text. When
the attempts or the time are spent, the last error is raised as it was, so the caller
decides what giving up means (a dead letter with the reason, a failed job, an exit).

Two shapes of retry use the same policy:

- a call retried in place: :meth:`RetryPolicy.call`, or ``async for attempt in
  policy.asynchronous(...)`` (``sleep=`` lets a Kafka consumer keep polling while it waits);
- a loop that retries by going round again (re-reading a batch, flushing a buffer,
  converging to a desired state): :class:`Backoff`, which asks the same tenacity stop and
  wait strategies how long to pause after each failure and when to give up.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    stop_never,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from libs.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

# Retried by type: a dependency that is down may come back; bad input never gets better.
TRANSIENT: tuple[type[BaseException], ...] = (Unavailable,)


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``attempts`` tries within ``deadline_s`` (0: no time bound), waiting
    ``initial_s`` then doubling up to ``max_s``, each wait plus up to ``jitter_s`` at random
    (so replicas that failed together do not retry together).

    The deadline is checked before each wait: no attempt starts later than ``deadline_s``
    after the first one (tenacity's ``stop_before_delay``), so the time a caller is held is
    the deadline plus at most one attempt.

    ``attempts=None`` (with no deadline) never gives up: only for a loop that converges on
    a desired state and whose memory is bounded elsewhere (a buffer's capacity), never for
    one message: that one would block everything behind it.
    """

    attempts: int | None = 5
    initial_s: float = 0.5
    max_s: float = 10.0
    jitter_s: float = 0.5
    deadline_s: float = 0.0
    retry_on: tuple[type[BaseException], ...] = TRANSIENT

    def stop(self) -> stop_base:
        """tenacity's stop strategy of this policy."""
        stop: stop_base = stop_never if self.attempts is None else stop_after_attempt(self.attempts)
        if self.deadline_s > 0:
            stop = stop | stop_before_delay(self.deadline_s)
        return stop

    def wait(self) -> wait_base:
        """tenacity's wait strategy of this policy."""
        return wait_exponential_jitter(self.initial_s, self.max_s, 2, self.jitter_s)

    def _kwargs(self, what: str) -> dict[str, object]:
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            _log_retry(what, state.attempt_number, self.attempts, exc, wait)

        return {
            "stop": self.stop(),
            "wait": self.wait(),
            "retry": retry_if_exception_type(self.retry_on),
            "reraise": True,
            "before_sleep": before_sleep,
        }

    def asynchronous(
        self, what: str, *, sleep: Callable[[float], Awaitable[None]] | None = None
    ) -> AsyncRetrying:
        """``async for attempt in policy.asynchronous("..."): with attempt: ...``

        ``sleep`` replaces ``asyncio.sleep`` for the waits (a consumer polls meanwhile); an
        exception it raises ends the retries and propagates (a stop request)."""
        kwargs = self._kwargs(what)
        if sleep is not None:
            kwargs["sleep"] = sleep
        return AsyncRetrying(**kwargs)  # type: ignore[arg-type]

    def blocking(self, what: str) -> Retrying:
        """The same policy for blocking code (``for attempt in ...: with attempt: ...``)."""
        return Retrying(**self._kwargs(what))  # type: ignore[arg-type]

    async def call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """``await fn()`` under this policy; the last error is raised when it gives up."""
        async for attempt in self.asynchronous(what):
            with attempt:
                return await fn()
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def backoff(self, what: str) -> Backoff:
        """A :class:`Backoff` of this policy, for a loop that retries by going round again."""
        return Backoff(self, what)


class Backoff:
    """A :class:`RetryPolicy` for a loop whose retry is its next round (a consumer reading
    its batch again, a buffer flushed again), not a call made again.

    After each failure :meth:`failed` returns how long to pause, as tenacity's wait of the
    policy says, or re-raises the error when its stop says the attempts or the deadline are
    spent; :meth:`succeeded` starts the count over. What counts as a failure is the
    caller's: a loop catches only the types it means to retry. The caller logs each
    failure with what it knows (what is buffered, what is read again); giving up is logged
    here.
    """

    def __init__(self, policy: RetryPolicy, what: str) -> None:
        self.policy = policy
        self.what = what
        self._stop = policy.stop()
        self._wait = policy.wait()
        self._state: RetryCallState | None = None

    @property
    def failures(self) -> int:
        """Failures since the last success."""
        return 0 if self._state is None else self._state.attempt_number

    def failed(self, exc: BaseException) -> float:
        """Seconds to pause before the next round; raises ``exc`` when the policy is spent."""
        if self._state is None:
            self._state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        else:
            self._state.prepare_for_next_attempt()
        state = self._state
        state.set_exception((type(exc), exc, exc.__traceback__))
        state.upcoming_sleep = self._wait(state)
        if self._stop(state):
            self._state = None
            log.error("%s failed %d times; giving up: %s", self.what, state.attempt_number, exc)
            raise exc
        return state.upcoming_sleep

    def succeeded(self) -> None:
        self._state = None


def _log_retry(what: str, attempt: int, attempts: int | None, exc: BaseException | None, wait: float) -> None:
    log.warning(
        "%s failed (attempt %d of %s: %s); retrying in %.1fs",
        what,
        attempt,
        "unbounded" if attempts is None else attempts,
        exc,
        wait,
    )


__all__ = ["TRANSIENT", "Backoff", "RetryPolicy"]
