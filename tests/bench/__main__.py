"""``python -m tests.bench``: run every benchmark, print the table, write build/bench.json."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aif.infra import ensure_kafka
from tests.bench import bus, monitor
from tests.bench import features as features_bench
from tests.bench import gateway as gateway_bench
from tests.bench import ingest as ingest_bench
from tests.bench import loop as loop_bench
from tests.bench import pipeline as pipeline_bench
from tests.bench import train as train_bench
from tests.bench.report import Figure, render, write

OUT = Path(__file__).resolve().parents[2] / "build" / "bench.json"


def main() -> int:
    kafka = ensure_kafka()
    try:
        figures: list[Figure] = []
        print(f"bench: event bus, {bus.N:,} events each way ...", file=sys.stderr, flush=True)
        figures += asyncio.run(bus.measure(kafka.bootstrap_servers))
        print(
            f"bench: ingestion vs raw aiokafka, {ingest_bench.N:,} loan records ...",
            file=sys.stderr,
            flush=True,
        )
        figures += asyncio.run(ingest_bench.measure_ingestion(kafka.bootstrap_servers))
        print(
            f"bench: ingestion + feature store on a fresh factory, {pipeline_bench.N:,} records ...",
            file=sys.stderr,
            flush=True,
        )
        figures += pipeline_bench.measure_pipeline()
        print(
            f"bench: feature freshness at {features_bench.RATE:,} records/s vs raw Kafka latency ...",
            file=sys.stderr,
            flush=True,
        )
        figures += asyncio.run(features_bench.measure(kafka.bootstrap_servers))
        print("bench: training loop vs a plain PyTorch loop ...", file=sys.stderr, flush=True)
        figures += train_bench.measure_training()
        print(
            f"bench: monitor vs river ADWIN/KSWIN, {len(monitor.SEEDS)} drifting loan streams ...",
            file=sys.stderr,
            flush=True,
        )
        figures += monitor.measure_monitor()
        print(
            "bench: serving gateway vs Triton direct (OIP, business API, perf_analyzer) ...",
            file=sys.stderr,
            flush=True,
        )
        figures += gateway_bench.measure_gateway(kafka.bootstrap_servers)
        print(
            "bench: the closed loop on a fresh factory (drift onset → new champion serving) ...",
            file=sys.stderr,
            flush=True,
        )
        figures += loop_bench.measure_loop()
    finally:
        kafka.stop()
    print(render(figures))
    write(figures, OUT)
    print(f"\nwrote {OUT.relative_to(Path.cwd()) if OUT.is_relative_to(Path.cwd()) else OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
