"""The bench table and build/bench.json (a list of {name, value, unit, baseline_name, baseline_value, ratio})."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    baseline_name: str
    baseline_value: float

    @property
    def ratio(self) -> float:
        return self.value / self.baseline_value if self.baseline_value else float("nan")

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "ratio": round(self.ratio, 4)}


def render(figures: list[Figure]) -> str:
    rows = [("name", "value", "unit", "baseline", "baseline value", "ratio")]
    rows += [
        (f.name, f"{f.value:,.2f}", f.unit, f.baseline_name, f"{f.baseline_value:,.2f}", f"{f.ratio:.3f}")
        for f in figures
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i in (0, 2, 3) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write(figures: list[Figure], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([f.to_json() for f in figures], indent=2) + "\n")
