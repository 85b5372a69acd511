"""Lifecycle events are hints, not authority: what a consumer does with one it cannot confirm.

Anyone who can write a lifecycle topic can write any event on it, so a consumer that
changes state because of one (promote, roll back, retrain, serve) first asks the event's
owner over gRPC whether it is true, and acts on the owner's answer, never on the event's
own fields. An event the owner denies (the report it names does not exist, is about
another model, or says something else) is *forged*: :class:`ForgedEvents` counts it
(``aif_events_forged_total{service,type}``), logs it in one bounded line, and raises
:class:`Unconfirmed`, so the consumer dead-letters it with the reason and nothing changes.
An owner that cannot be reached is not a forgery: the consumer raises ``Unavailable``
and retries.

Event times are the producer's word too: :func:`clamp` caps one at now + a small skew
wherever it is stored or compared, so a date far ahead cannot outrank every later change.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta

from opentelemetry import metrics

from libs.errors import FailedPrecondition

log = logging.getLogger(__name__)

# Clocks of hosts in one factory agree within this; an event time beyond now + skew is
# the producer's invention and is capped there.
DEFAULT_SKEW_S = 30.0
# What of an event's (attacker-chosen) text reaches a log line or a dead letter.
MAX_REASON = 300

_forged = metrics.get_meter("aifactory.lifecycle").create_counter(
    "aif.events.forged",
    description="Lifecycle events the event's owner did not confirm (dropped, never acted on)",
)


class Unconfirmed(FailedPrecondition):
    """The event's owner does not confirm it: it is dead-lettered and changes nothing."""


def bounded(text: str, limit: int = MAX_REASON) -> str:
    """``text`` on one line, at most ``limit`` characters (event fields are anyone's words)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def clamp(at: datetime, now: datetime, skew_s: float = DEFAULT_SKEW_S) -> datetime:
    """``at``, or now + skew when it claims to be later than that."""
    latest = now + timedelta(seconds=skew_s)
    return min(at, latest)


def clamp_us(at_us: int, now_us: int, skew_s: float = DEFAULT_SKEW_S) -> int:
    """:func:`clamp` on microseconds since the epoch."""
    return min(at_us, now_us + int(skew_s * 1_000_000))


class ForgedEvents:
    """Counts and logs the forged events one service received (``counts`` by event type,
    for tests; the metric for operators)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.counts: Counter[str] = Counter()

    def reject(self, event_type: str, event_id: str, reason: str) -> Unconfirmed:
        """Count and log a forged event; returns the error to raise (the consumer dead-letters it)."""
        why = bounded(reason)
        self.counts[event_type] += 1
        _forged.add(1, {"service": self.service, "type": event_type})
        log.warning(
            "%s: %s %s not confirmed by its owner, dropped: %s",
            self.service,
            event_type,
            bounded(event_id, 100),
            why,
        )
        return Unconfirmed(f"{event_type} not confirmed by its owner: {why}")
