"""``python -m tests.bench``: run every benchmark, print the table, write build/bench.json.

``--smoke`` runs each part with tiny sizes (a couple of minutes): it proves the bench still
runs from a clean setup and that every row has its baseline, not what the figures are
(`.ci/run` runs it after `make test`); it writes build/bench-smoke.json. ``--only a,b``
runs those parts alone. The run fails (exit 1) when a row is refused (see
:func:`tests.bench.report.problems`): no baseline measured, a value missing without a
reason, a part that failed, or an expected row absent.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from aif.infra import ensure_kafka
from aif.loop import LoopConfig
from aif.stack.catalogue import new_topic, seed_catalogue_sync
from tests.bench import artifact, bus, monitor
from tests.bench import features as features_bench
from tests.bench import gateway as gateway_bench
from tests.bench import ingest as ingest_bench
from tests.bench import loop as loop_bench
from tests.bench import mtls as mtls_bench
from tests.bench import multihost as multihost_bench
from tests.bench import otlp as otlp_bench
from tests.bench import pipeline as pipeline_bench
from tests.bench import rest as rest_bench
from tests.bench import sasl as sasl_bench
from tests.bench import train as train_bench
from tests.bench import trainingset as trainingset_bench
from tests.bench.report import Figure, problems, render, write

BUILD = Path(__file__).resolve().parents[2] / "build"

# Each part's rows: a part that returns fewer is refused.
EXPECTED = {
    "bus": ["bus.events_per_s"],
    "ingest": ["ingest.only_records_per_s"],
    "pipeline": ["ingest.records_per_s"],
    "sasl": ["sasl.pipeline_records_per_s"],
    "features": ["features.freshness_p50_ms", "features.freshness_p99_ms"],
    "train": ["train.samples_per_s"],
    "trainingset": ["trainingset.rows_per_s", "trainingset.client_peak_mib"],
    "monitor": ["monitor.delay_records", "monitor.false_alarms"],
    "gateway": [
        "gateway.inline.p50_ms",
        "gateway.inline.p99_ms",
        *(f"gateway.entity.{b}.p{q}_ms" for b in gateway_bench.BACKENDS for q in (50, 99)),
        "gateway.inline.rps_c8",
        "floor.inline.p50_ms",
        "floor.inline.p99_ms",
        "floor.entity.p99_ms",
        "floor.inline.rps_c8",
        "perf_analyzer.p50_ms",
        "perf_analyzer.p99_ms",
        "perf_analyzer.rps_c8",
    ],
    "rest": ["rest.predict.p50_ms", "rest.predict.p99_ms", "rest.predict.rps_c8"],
    "otlp": ["otlp.predict.rps_c8", "otlp.oip.rps_c8", "otlp.predict.p99_ms"],
    "mtls": list(mtls_bench.NAMES),
    "artifact": ["artifact.load_s"],
    "loop": ["loop.seconds", "loop.detection_records", "loop.false_alarms"],
    # After "loop": its row is the baseline of this one.
    "multihost": [multihost_bench.NAME],
}

# Tiny sizes: every code path of every part, none of the statistics.
SMOKE: dict[object, dict[str, object]] = {
    bus: {"N": 500, "BATCH": 100},
    ingest_bench: {"N": 500, "WARMUP": 50},
    pipeline_bench: {"N": 1_000, "WARMUP": 100},
    sasl_bench: {"N": 500, "WARMUP": 50, "ROUNDS": 1},
    features_bench: {"SECONDS": 2, "WARMUP": 200},
    train_bench: {"ROWS": 1_500, "EPOCHS": 2, "ROUNDS": 1},
    trainingset_bench: {"ROWS": 20_000, "ROUNDS": 1},
    monitor: {"SEEDS": (11,)},
    artifact: {"ROUNDS": 1},
    multihost_bench: {"SKIP": "--smoke (make test runs the same layout: tests/multihost)"},
    otlp_bench: {"ROUNDS": 2, "RPS_SECONDS": 0.5, "OIP_RPS_SECONDS": 0.5, "LATENCY_CALLS": 20, "WARMUP": 20},
    rest_bench: {"ROUNDS": 2, "RPS_SECONDS": 0.3, "RPS_ROUNDS": 1, "LATENCY_CALLS": 20, "WARMUP": 20},
    mtls_bench: {"ROUNDS": 2, "RPS_SECONDS": 0.3, "LATENCY_CALLS": 20, "WARMUP": 20},
    gateway_bench: {
        "ROUNDS": 2,
        "LATENCY_CALLS": 20,
        "WARMUP": 20,
        "RPS_SECONDS": 0.3,
        "RPS_ROUNDS": 1,
        "ENTITIES": 100,
        "PA_REQUESTS": 200,
        # Any three windows will do: the smoke checks that perf_analyzer runs, not its figures.
        "PA_STABILITY": ("1000",),
        "PA_TRIALS": 4,
    },
}
# Short runs, but with room for the drift job to gather min_rows of labelled data after the
# onset (it waits for them): with 6,000 records the loop gave up before v2 was trained.
SMOKE_LOOP = LoopConfig(bootstrap=2_000, stationary=400, recovery=100, max_after_onset=20_000, timeout_s=300)


def _parts(
    bootstrap: str, loop_config: LoopConfig, so_far: list[Figure]
) -> dict[str, tuple[str, Callable[[], list[Figure]]]]:
    return {
        "bus": (f"event bus, {bus.N:,} events each way", lambda: asyncio.run(bus.measure(bootstrap))),
        "ingest": (
            f"ingestion vs raw aiokafka, {ingest_bench.N:,} loan records",
            lambda: asyncio.run(ingest_bench.measure_ingestion(bootstrap)),
        ),
        "pipeline": (
            f"ingestion + feature store on a fresh factory, {pipeline_bench.N:,} records",
            pipeline_bench.measure_pipeline,
        ),
        "sasl": (
            f"ingestion + feature store on SASL_SSL vs PLAINTEXT, same broker, {sasl_bench.N:,} records",
            sasl_bench.measure_sasl,
        ),
        "features": (
            f"feature freshness (producer → online) at {features_bench.RATE:,} records/s vs raw Kafka latency",
            lambda: asyncio.run(features_bench.measure(bootstrap)),
        ),
        "train": ("training loop vs a plain PyTorch loop", train_bench.measure_training),
        "trainingset": (
            f"training set streamed from the feature store vs local parquet, {trainingset_bench.ROWS:,} rows",
            trainingset_bench.measure_trainingset,
        ),
        "monitor": (
            f"monitor vs river ADWIN/KSWIN, {len(monitor.SEEDS)} drifting loan streams",
            monitor.measure_monitor,
        ),
        "gateway": (
            "serving gateway vs Triton direct and Feast SDK + Triton (OIP, business API, perf_analyzer)",
            lambda: gateway_bench.measure_gateway(bootstrap),
        ),
        "rest": (
            "the business API over HTTP/JSON vs gRPC, same gateway",
            lambda: rest_bench.measure_rest(bootstrap),
        ),
        "otlp": (
            "the gateway exporting traces and metrics over OTLP to a collector vs export off",
            lambda: otlp_bench.measure_otlp(bootstrap),
        ),
        "mtls": (
            "the gateway with mTLS and token checks vs plaintext",
            lambda: mtls_bench.measure_mtls(bootstrap),
        ),
        "artifact": (
            "a version into Triton through its API with the registry's bundle vs from Triton's folder",
            artifact.measure_artifact,
        ),
        "loop": (
            "the closed loop on a fresh factory (drift onset → new champion serving)",
            lambda: loop_bench.measure_loop(loop_config),
        ),
        "multihost": (
            "the closed loop with every part on its own network namespace, user and folder",
            lambda: multihost_bench.measure_multihost(so_far),
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench")
    parser.add_argument("--smoke", action="store_true", help="every part with tiny sizes (CI)")
    parser.add_argument("--only", default="", help=f"comma-separated parts of {', '.join(EXPECTED)}")
    args = parser.parse_args(argv)
    chosen = [p for p in args.only.split(",") if p] or list(EXPECTED)
    unknown = sorted(set(chosen) - set(EXPECTED))
    if unknown:
        parser.error(f"unknown parts {unknown}; known: {', '.join(EXPECTED)}")
    if args.smoke:
        for module, sizes in SMOKE.items():
            for name, value in sizes.items():
                setattr(module, name, value)
    out = BUILD / ("bench-smoke.json" if args.smoke else "bench.json")
    # SIGTERM (a CI timeout) unwinds like Ctrl-C: the fresh factories and processes the
    # parts started are stopped by their context managers instead of being left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    # The parts' services run on the open local broker: local development, said explicitly.
    os.environ.setdefault("AIF_KAFKA_ALLOW_PLAINTEXT", "1")
    kafka = ensure_kafka()
    # The services the parts run alone (no registry) learn the shipped use cases from a
    # catalogue topic of this run's own, seeded as the registry would publish it; every
    # process a part starts inherits the variable (fresh factories apply their own).
    os.environ["AIF_USECASES_TOPIC"] = new_topic("bench")
    seed_catalogue_sync(kafka.bootstrap_servers, os.environ["AIF_USECASES_TOPIC"])
    figures: list[Figure] = []
    seconds: dict[str, float] = {}
    errors: list[str] = []
    try:
        parts = _parts(kafka.bootstrap_servers, SMOKE_LOOP if args.smoke else loop_bench.CONFIG, figures)
        for name in chosen:
            what, run = parts[name]
            print(f"bench: {what} ...", file=sys.stderr, flush=True)
            started = time.monotonic()
            try:
                figures += run()
            except Exception as exc:  # noqa: BLE001 - one part failing must not hide the others' rows
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                print(f"bench: {name} failed: {exc!r}", file=sys.stderr, flush=True)
            seconds[name] = time.monotonic() - started
            print(f"bench: {name} took {seconds[name]:.1f}s", file=sys.stderr, flush=True)
    finally:
        kafka.stop()
    print(render(figures))
    write(figures, out)
    print(f"\nwrote {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
    print("seconds per part: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    refused = errors + problems(figures, [n for part in chosen for n in EXPECTED[part]])
    if refused:
        print("bench: REFUSED\n  " + "\n  ".join(refused), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
