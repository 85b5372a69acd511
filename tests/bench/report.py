"""The bench table and build/bench.json (a list of {name, value, unit, baseline_name,
baseline_value, ratio, note, failed}).

Every row carries its baseline, measured in the same run. A value (or baseline) that is
not a number must say why in ``note`` ("missed: ..."): a detector that never fired is a
miss, not a zero. :func:`problems` lists the rows the bench must refuse: no baseline, a
value or baseline missing without a note, a row marked ``failed`` (the thing did not run
or did not finish), and any expected row that is absent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    name: str
    value: float | None
    unit: str
    baseline_name: str
    baseline_value: float | None
    # Why value or baseline_value is None ("missed: no alarm within 4,000 records"), or a caveat.
    note: str = ""
    # The measurement did not happen as it should (a part did not run, a loop did not close).
    failed: bool = False

    @property
    def ratio(self) -> float | None:
        if not _number(self.value) or not _number(self.baseline_value) or not self.baseline_value:
            return None
        return self.value / self.baseline_value  # type: ignore[operator]

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        for key in ("value", "baseline_value"):
            if not _number(out[key]):
                out[key] = None  # JSON has no NaN
        ratio = self.ratio
        return {**out, "ratio": None if ratio is None else round(ratio, 4)}


def _number(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def problems(figures: Iterable[Figure], expected: Iterable[str] = ()) -> list[str]:
    """Why each refused row is refused; empty when the table is complete and honest."""
    out: list[str] = []
    names = set()
    for f in figures:
        names.add(f.name)
        if f.failed:
            out.append(f"{f.name}: failed{f': {f.note}' if f.note else ''}")
        elif not f.baseline_name:
            out.append(f"{f.name}: no baseline")
        elif not (_number(f.value) and _number(f.baseline_value)) and not f.note:
            out.append(f"{f.name}: value or baseline not measured, and no note says why")
    out += [f"{name}: missing from the table" for name in expected if name not in names]
    return out


def _cell(x: float | None) -> str:
    return f"{x:,.2f}" if _number(x) else "—"


def render(figures: list[Figure]) -> str:
    rows = [("name", "value", "unit", "baseline", "baseline value", "ratio", "note")]
    rows += [
        (
            f.name,
            _cell(f.value),
            f.unit,
            f.baseline_name,
            _cell(f.baseline_value),
            "—" if f.ratio is None else f"{f.ratio:.3f}",
            ("FAILED " if f.failed else "") + f.note,
        )
        for f in figures
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i in (0, 2, 3, 6) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write(figures: list[Figure], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([f.to_json() for f in figures], indent=2) + "\n")
