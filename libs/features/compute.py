"""One use case's features for one record, given its entity's state."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from libs.features.transforms import RowPlan, to_number
from libs.features.windows import EntityState, aggregate
from libs.usecase import UseCase


@dataclass(frozen=True)
class Applied:
    """The record's features, in ``FeatureComputer.columns`` order.

    ``newest`` is False for a late record (an older event time than one the entity has
    already seen): its row belongs in the offline history, but the online value stays
    that of the newer record.
    """

    values: list[float | None]
    newest: bool


@dataclass(frozen=True)
class Duplicate:
    """The entity has already applied this record id (a replay): nothing to do."""

    record_id: str


def _us(td: Any) -> int:
    return int(round(td.total_seconds() * 1_000_000))


class FeatureComputer:
    """Computes ``uc.model_inputs()`` for records of one use case, updating entity state."""

    def __init__(self, uc: UseCase) -> None:
        self.usecase = uc
        self._rows = RowPlan(uc)
        self.sources = sorted({a.source for a in uc.features.aggregates if a.source})
        index = {s: i for i, s in enumerate(self.sources)}
        self._aggs = [(a.aggregate, index.get(a.source or ""), _us(a.window)) for a in uc.features.aggregates]
        self.columns = self._rows.names + [a.name for a in uc.features.aggregates]
        assert self.columns == uc.model_inputs(), "columns out of step with UseCase.model_inputs()"
        self.longest_window_us = max((w for _, _, w in self._aggs), default=0)

    def apply(
        self, state: EntityState, fields: Mapping[str, Any], event_time_us: int, record_id: str
    ) -> Applied | Duplicate:
        """Add the record to ``state`` (in place) and return its features, or :class:`Duplicate`.

        Raises :class:`~libs.features.transforms.FeatureError` on a bad value, before
        touching the state.
        """
        if state.seen(record_id):
            return Duplicate(record_id)
        row = self._rows(fields)
        sources = [to_number(fields.get(s), s) for s in self.sources]
        newest = state.max_time is None or event_time_us >= state.max_time
        state.add(event_time_us, record_id, sources)
        hi = bisect.bisect_right(state.times, event_time_us)
        aggs: list[float | None] = []
        for kind, src, window in self._aggs:
            lo = bisect.bisect_right(state.times, event_time_us - window, 0, hi)
            values = [] if src is None else [state.values[j][src] for j in range(lo, hi)]
            aggs.append(aggregate(kind, values, hi - lo))
        state.prune(self.longest_window_us)
        return Applied(row + aggs, newest)
