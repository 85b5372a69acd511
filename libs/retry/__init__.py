"""One retry policy for the whole factory, on tenacity: bounded, exponential, jittered.

Whatever retries (a consumer waiting on a dependency, a client calling another service,
a relay publishing its outbox) says *how often* with a :class:`RetryPolicy` and *what*
by exception type: only :data:`TRANSIENT` errors (a dependency that is down,
:class:`~libs.errors.Unavailable`) are retried, never by matching message text. When
the attempts or the time are spent, the last error is raised as it was, so the caller
decides what giving up means (a dead letter with the reason, a failed job, an exit).
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
    stop_after_delay,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from libs.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

# Retried by type: a dependency that is down may come back; bad input never gets better.
TRANSIENT: tuple[type[BaseException], ...] = (Unavailable,)


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``attempts`` tries within ``deadline_s`` (0: no time bound), waiting
    ``initial_s`` then doubling up to ``max_s``, each wait plus up to ``jitter_s`` at random
    (so replicas that failed together do not retry together)."""

    attempts: int = 5
    initial_s: float = 0.5
    max_s: float = 10.0
    jitter_s: float = 0.5
    deadline_s: float = 0.0
    retry_on: tuple[type[BaseException], ...] = TRANSIENT

    def _kwargs(self, what: str) -> dict[str, object]:
        stop: stop_base = stop_after_attempt(self.attempts)
        if self.deadline_s > 0:
            stop = stop | stop_after_delay(self.deadline_s)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "%s failed (attempt %d of %d: %s); retrying in %.1fs",
                what,
                state.attempt_number,
                self.attempts,
                exc,
                wait,
            )

        return {
            "stop": stop,
            "wait": wait_exponential_jitter(self.initial_s, self.max_s, 2, self.jitter_s),
            "retry": retry_if_exception_type(self.retry_on),
            "reraise": True,
            "before_sleep": before_sleep,
        }

    def asynchronous(self, what: str) -> AsyncRetrying:
        """``async for attempt in policy.asynchronous("..."): with attempt: ...``"""
        return AsyncRetrying(**self._kwargs(what))  # type: ignore[arg-type]

    def blocking(self, what: str) -> Retrying:
        """The same policy for blocking code (``for attempt in ...: with attempt: ...``)."""
        return Retrying(**self._kwargs(what))  # type: ignore[arg-type]

    async def call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """``await fn()`` under this policy; the last error is raised when it gives up."""
        async for attempt in self.asynchronous(what):
            with attempt:
                return await fn()
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


__all__ = ["TRANSIENT", "RetryPolicy"]
