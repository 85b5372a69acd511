"""Loan applications from river's Agrawal generator, with a known concept drift.

Before ``drift_at`` the approval rule is Agrawal's function ``before``; after a
transition of ``drift_width`` records it is function ``after`` (river's
ConceptDriftStream). Applicants repeat (``applicants`` distinct ids) so per-entity
aggregates mean something; the outcome (the label) is observed ``label_delay`` after
the application.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from river.datasets import synth

from aif.datagen.base import Example

_FIRST = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
_LAST = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman"]


@dataclass
class LoanStream:
    seed: int = 42
    drift_at: int | None = None  # no drift unless asked for
    drift_width: int = 50
    before: int = 0
    after: int = 2
    applicants: int = 2_000
    start: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    interval: timedelta = timedelta(seconds=1)
    label_delay: timedelta = timedelta(seconds=30)

    def __iter__(self) -> Iterator[Example]:
        base = synth.Agrawal(classification_function=self.before, seed=self.seed)
        stream = (
            base
            if self.drift_at is None
            else synth.ConceptDriftStream(
                stream=base,
                drift_stream=synth.Agrawal(classification_function=self.after, seed=self.seed + 1),
                position=self.drift_at,
                width=self.drift_width,
                seed=self.seed,
            )
        )
        rng = random.Random(self.seed)
        for i, (x, y) in enumerate(stream):
            number = rng.randrange(self.applicants)
            applicant = f"a{number:05d}"
            at = self.start + i * self.interval
            record = {
                "applicant_id": applicant,
                "event_time": at,
                "applicant_name": f"{_FIRST[number % len(_FIRST)]} {_LAST[number % len(_LAST)]}",
                "salary": round(float(x["salary"]), 2),
                "commission": round(float(x["commission"]), 2),
                "age": int(x["age"]),
                "elevel": int(x["elevel"]),
                "car": int(x["car"]),
                "zipcode": int(x["zipcode"]),
                "hvalue": round(float(x["hvalue"]), 2),
                "hyears": int(x["hyears"]),
                "loan": round(float(x["loan"]), 2),
                "gender": rng.choice("fmx"),
            }
            yield Example(
                record,
                f"loan-{self.seed}-{i}",
                applicant,
                at,
                int(y),
                at + self.label_delay,
                drifted=self.drift_at is not None and i >= self.drift_at,
            )
