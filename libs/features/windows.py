"""Exact sliding-window aggregates per entity, over event time.

An aggregate with window ``w`` computed at a record's event time ``t`` covers the
entity's records with event time in ``(t - w, t]`` — the same rule as pandas'
``rolling(w)`` on a time index (``closed="right"``), so a pandas reference matches it
exactly. Records the entity has seen with an event time after ``t`` (a late record)
are not in its window. ``count`` counts records; ``sum``/``mean``/``min``/``max``/``last``
use the non-null values of their source and are null when there is none; ``last`` is the
value of the newest such record (by event time, then arrival).

:class:`EntityState` keeps only what later windows can need: the entries within the
longest window of the newest event time seen, plus the ids of the last records applied
(so a replayed record is recognised after its entry was pruned).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# How many applied record ids an entity remembers beyond its window entries.
RECENT_IDS = 256


@dataclass
class EntityState:
    """One entity's recent records: parallel lists sorted by (event time, arrival)."""

    times: list[int] = field(default_factory=list)  # event time, µs since the epoch (UTC)
    ids: list[str] = field(default_factory=list)
    values: list[list[float | None]] = field(default_factory=list)  # aggregate sources per record
    recent: list[str] = field(default_factory=list)  # last applied ids, oldest first
    max_time: int | None = None

    def seen(self, record_id: str) -> bool:
        return record_id in self.recent or record_id in self.ids

    def add(self, at: int, record_id: str, values: list[float | None]) -> None:
        i = bisect.bisect_right(self.times, at)
        self.times.insert(i, at)
        self.ids.insert(i, record_id)
        self.values.insert(i, values)
        self.recent.append(record_id)
        if len(self.recent) > RECENT_IDS:
            del self.recent[: len(self.recent) - RECENT_IDS]
        self.max_time = at if self.max_time is None else max(self.max_time, at)

    def prune(self, longest_window_us: int) -> None:
        """Drop entries no window ending at or after the newest event time can include."""
        if self.max_time is None:
            return
        cut = bisect.bisect_right(self.times, self.max_time - longest_window_us)
        if cut:
            del self.times[:cut], self.ids[:cut], self.values[:cut]

    def to_json(self) -> dict[str, Any]:
        return {"t": self.times, "i": self.ids, "v": self.values, "r": self.recent, "m": self.max_time}

    @staticmethod
    def from_json(data: dict[str, Any] | None) -> EntityState:
        if not data:
            return EntityState()
        return EntityState(
            list(data["t"]), list(data["i"]), [list(v) for v in data["v"]], list(data["r"]), data["m"]
        )


def aggregate(kind: str, values: Sequence[float | None], count: int) -> float | None:
    """One aggregate over a window's source values (in time order); ``count`` = records in it."""
    if kind == "count":
        return float(count)
    present = [v for v in values if v is not None]
    if not present:
        return None
    if kind == "sum":
        return math.fsum(present)
    if kind == "mean":
        return math.fsum(present) / len(present)
    if kind == "min":
        return min(present)
    if kind == "max":
        return max(present)
    if kind == "last":
        return present[-1]
    raise ValueError(f"unknown aggregate {kind!r}")
