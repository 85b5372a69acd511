"""Image regions from river's bundled ImageSegments data set (2,310 rows, 7 classes).

The rows are shuffled with the seed and replayed as many times as asked; each
region is assigned to one of ``cameras`` cameras (the entity). The label is in
the record.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from river import datasets

from aif.datagen.base import Example


@dataclass
class SegmentStream:
    seed: int = 42
    cameras: int = 20
    limit: int = 2_310
    start: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    interval: timedelta = timedelta(seconds=1)

    def __iter__(self) -> Iterator[Example]:
        rows = list(datasets.ImageSegments())
        rng = random.Random(self.seed)
        rng.shuffle(rows)
        for i in range(self.limit):
            x, y = rows[i % len(rows)]
            camera = rng.randrange(self.cameras)
            at = self.start + i * self.interval
            record = {
                "camera_id": camera,
                "captured_at": at,
                **{k.replace("-", "_"): float(v) for k, v in x.items()},
                "surface": y,
            }
            yield Example(record, f"seg-{self.seed}-{i}", str(camera), at, y, at)
