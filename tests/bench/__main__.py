"""``python -m tests.bench``: run every benchmark, print the table, write build/bench.json."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from libs.infra import ensure_kafka
from tests.bench import bus
from tests.bench.report import Figure, render, write

OUT = Path(__file__).resolve().parents[2] / "build" / "bench.json"


def main() -> int:
    kafka = ensure_kafka()
    try:
        figures: list[Figure] = []
        print(f"bench: event bus, {bus.N:,} events each way ...", file=sys.stderr, flush=True)
        figures += asyncio.run(bus.measure(kafka.bootstrap_servers))
    finally:
        kafka.stop()
    print(render(figures))
    write(figures, OUT)
    print(f"\nwrote {OUT.relative_to(Path.cwd()) if OUT.is_relative_to(Path.cwd()) else OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
