"""Joining outcomes to predictions by prediction id, in either arrival order.

Predictions and feedback come on different topics, so either may be read first. A
prediction waits for its outcome until the feedback stream's event time (the largest
``observed_at`` seen) has passed ``prediction.at + max_delay``; it then expires
unlabelled. An outcome observed more than ``max_delay`` after its prediction is
*late* and dropped. An outcome read before its prediction waits until the prediction
stream's event time has passed ``observed_at + max_delay`` (its prediction, made
before the outcome, would have arrived by then); it then counts as *unmatched*.

Two watermarks, one per stream, so a consumer that reads one topic ahead of the other
(catching up after a restart) does not expire what the other topic still holds.
Memory is bounded: at most ``capacity`` waiting entries per side (the oldest beyond
that expire early, and are counted), and a bounded memory of joined ids that makes a
redelivered prediction or outcome a no-op. :meth:`Joiner.checkpoint` is all of it as
JSON (the monitor's checkpoint, :mod:`services.monitor.journal`).
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.monitor import journal
from services.monitor.domain import Labelled, Outcome, Prediction

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class JoinCounts:
    joined: int = 0
    expired: int = 0  # predictions whose outcome never came within max_delay
    late: int = 0  # outcomes beyond max_delay after their prediction (dropped)
    unmatched: int = 0  # outcomes whose prediction never came
    duplicates: int = 0


class Joiner:
    def __init__(self, max_delay: timedelta, capacity: int = 200_000) -> None:
        self.max_delay = max_delay
        self.capacity = capacity
        self.counts = JoinCounts()
        self._predictions: dict[str, Prediction] = {}
        self._outcomes: dict[str, Outcome] = {}
        # (deadline, id) heaps; an entry whose id left the dict is skipped (lazy deletion).
        self._p_heap: list[tuple[datetime, str]] = []
        self._o_heap: list[tuple[datetime, str]] = []
        self._done: OrderedDict[str, None] = OrderedDict()
        self._p_mark = _EPOCH  # largest prediction time seen
        self._o_mark = _EPOCH  # largest observed_at seen

    @property
    def waiting(self) -> tuple[int, int]:
        """(predictions waiting for an outcome, outcomes waiting for a prediction)."""
        return len(self._predictions), len(self._outcomes)

    def known(self, prediction_id: str) -> bool:
        """Is the prediction waiting or done (joined, late)? A prediction read again is."""
        return prediction_id in self._done or prediction_id in self._predictions

    def checkpoint(self) -> dict[str, Any]:
        """Everything the joiner holds, as JSON (what :meth:`restore` takes)."""
        return {
            "predictions": [journal.prediction_doc(p) for p in self._predictions.values()],
            "outcomes": [journal.outcome_doc(o) for o in self._outcomes.values()],
            "done": list(self._done),
            "counts": dataclasses.asdict(self.counts),
            "marks": [self._p_mark.isoformat(), self._o_mark.isoformat()],
        }

    def restore(self, saved: Mapping[str, Any]) -> None:
        self.counts = JoinCounts(**saved["counts"])
        self._p_mark, self._o_mark = (datetime.fromisoformat(m) for m in saved["marks"])
        self._done = OrderedDict.fromkeys(saved["done"])
        self._predictions = {p.prediction_id: p for p in map(journal.prediction_of, saved["predictions"])}
        self._outcomes = {o.prediction_id: o for o in map(journal.outcome_of, saved["outcomes"])}
        self._p_heap = [(p.at + self.max_delay, pid) for pid, p in self._predictions.items()]
        self._o_heap = [(o.observed_at + self.max_delay, pid) for pid, o in self._outcomes.items()]
        heapq.heapify(self._p_heap)
        heapq.heapify(self._o_heap)

    def _finish(self, prediction_id: str) -> None:
        self._done[prediction_id] = None
        if len(self._done) > self.capacity:
            self._done.popitem(last=False)

    def _match(self, prediction: Prediction, outcome: Outcome) -> Labelled | None:
        self._finish(prediction.prediction_id)
        if outcome.observed_at < prediction.at:
            # An outcome is never observed before its prediction was made: a sender that
            # says so is clamped, not believed (its time feeds the window's clock).
            outcome = dataclasses.replace(outcome, observed_at=prediction.at)
        if outcome.observed_at - prediction.at > self.max_delay:
            self.counts.late += 1
            return None
        self.counts.joined += 1
        return Labelled(prediction, outcome)

    def add_prediction(self, prediction: Prediction) -> Labelled | None:
        """The joined pair when its outcome was already waiting, else None."""
        pid = prediction.prediction_id
        if pid in self._done or pid in self._predictions:
            self.counts.duplicates += 1
            return None
        self._p_mark = max(self._p_mark, prediction.at)
        outcome = self._outcomes.pop(pid, None)
        if outcome is not None:
            joined = self._match(prediction, outcome)
        else:
            joined = None
            self._predictions[pid] = prediction
            heapq.heappush(self._p_heap, (prediction.at + self.max_delay, pid))
        self._expire()
        return joined

    def add_outcome(self, outcome: Outcome) -> Labelled | None:
        """The joined pair when its prediction was waiting, else None (held, or dropped)."""
        pid = outcome.prediction_id
        if pid in self._done or pid in self._outcomes:
            self.counts.duplicates += 1
            return None
        self._o_mark = max(self._o_mark, outcome.observed_at)
        prediction = self._predictions.pop(pid, None)
        if prediction is not None:
            joined = self._match(prediction, outcome)
        else:
            joined = None
            self._outcomes[pid] = outcome
            heapq.heappush(self._o_heap, (outcome.observed_at + self.max_delay, pid))
        self._expire()
        return joined

    def _expire(self) -> None:
        heap, waiting = self._p_heap, self._predictions
        while heap and (heap[0][0] < self._o_mark or len(waiting) > self.capacity):
            _, pid = heapq.heappop(heap)
            if waiting.pop(pid, None) is not None:
                self.counts.expired += 1
        heap, held = self._o_heap, self._outcomes
        while heap and (heap[0][0] < self._p_mark or len(held) > self.capacity):
            _, pid = heapq.heappop(heap)
            if held.pop(pid, None) is not None:
                self.counts.unmatched += 1
        # Drop stale heap entries (ids joined meanwhile) so the heaps stay bounded too.
        if len(self._p_heap) > 2 * len(self._predictions) + 1024:
            self._p_heap = [e for e in self._p_heap if e[1] in self._predictions]
            heapq.heapify(self._p_heap)
        if len(self._o_heap) > 2 * len(self._outcomes) + 1024:
            self._o_heap = [e for e in self._o_heap if e[1] in self._outcomes]
            heapq.heapify(self._o_heap)
