"""sasl.pipeline_records_per_s: ingestion + feature store on SASL_SSL vs PLAINTEXT, same broker.

One broker of the secure profile of its own (``build/bench-sasl``, its own ports) with a
PLAINTEXT listener beside its SASL_SSL one (:class:`aif.infra.KafkaSecure`'s
``plaintext_port``, for this measurement only). The ingestion and feature store services
run as their own processes, as deployed, twice in the same run: once on the PLAINTEXT
listener (their clients are User:ANONYMOUS, granted everything on this broker alone), once on
SASL_SSL with their own principals under the ACL table, the producer being
``producer.loan_approval``. Each run gets fresh consumer groups, faust app id, dataset and
Feast store; after a warm-up of WARMUP records, N loan applications are produced as JSON to
the raw topic and the figure is N over the time until the feature store's FeaturesWritten
events name every record (validated, published once, aggregated, written to Feast); each
side runs ROUNDS times, alternating which goes first, and the figures are the medians. The
issue's target: SASL_SSL at least 0.8× PLAINTEXT.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from aif.datagen import LoanStream, to_json
from aif.infra import InfraConfig, KafkaSecure
from aif.infra.kafka_admin import sync_acls
from aif.stack.catalogue import seed_catalogue
from aifactory.featurestore.v1 import events_pb2 as fs_events
from libs.auth.kafka_acls import AclBinding, Operation, PatternType, ResourceType, producer
from libs.bus import topics
from tests.bench.report import Figure

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "build" / "bench-sasl"
USE_CASE = "loan_approval"
N = 20_000
# Runs of each side, alternating which goes first; the figures are the medians.
ROUNDS = 2
WARMUP = 300
BATCH = 1_000
# Ports of this part's own broker (SASL_SSL, controller, PLAINTEXT).
PORTS = (30194, 30195, 30196)
ANONYMOUS = "User:ANONYMOUS"
TARGET = 0.8


def _broker() -> KafkaSecure:
    base = InfraConfig.from_env()
    config = replace(
        base,
        infra_dir=WORK / "infra",
        tools_dir=base.tools_dir or base.infra_dir,
        kafka_secure_port=PORTS[0],
        kafka_secure_controller_port=PORTS[1],
    )
    return KafkaSecure(config, [USE_CASE], plaintext_port=PORTS[2])


async def _open_plaintext_side(broker: KafkaSecure) -> None:
    """User:ANONYMOUS (the PLAINTEXT listener's clients) may do anything on this broker."""
    grants = [
        AclBinding(ANONYMOUS, kind, "*", PatternType.LITERAL, Operation.ALL)
        for kind in (ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID)
    ]
    await sync_acls(broker.endpoint(), broker.client_security(), grants, lambda p: p == ANONYMOUS)


def _service_env(broker: KafkaSecure, side: str, run: str, name: str, data: Path) -> dict[str, str]:
    prefix = f"AIF_{name.upper()}_"
    env = {
        **os.environ,
        "AIF_AUTH_MODE": "off",
        "AIF_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        prefix + "GRPC_PORT": "0",
        prefix + "METRICS_PORT": "0",
        # This broker's own catalogue (the one its ACLs let services read), not the bench's.
        "AIF_USECASES_TOPIC": topics.USECASES,
    }
    # Fresh state on each run: groups, transactional ids, faust tables, dataset, Feast store.
    if name == "ingestion":
        env |= {
            prefix + "DATA_DIR": str(data / "raw"),
            prefix + "CONSUMER_GROUP": f"ingestion-bench-{run}",
            prefix + "INSTANCE_ID": run,
            prefix + "PRIVACY_SALT": "bench-salt",
        }
    else:
        env |= {
            prefix + "DATA_DIR": str(data / "featurestore"),
            prefix + "FEAST_REPO": str(data / "feast"),
            prefix + "APP_ID": f"aif-featurestore-bench-{run}",
        }
    if side == "plaintext":
        return env | {
            "AIF_KAFKA_BOOTSTRAP": f"{broker.config.host}:{PORTS[2]}",
            "AIF_KAFKA_ALLOW_PLAINTEXT": "1",
        }
    return env | {
        "AIF_KAFKA_BOOTSTRAP": broker.endpoint(),
        "AIF_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "AIF_KAFKA_SSL_CAFILE": str(broker.ca_file),
        "AIF_KAFKA_ALLOW_PLAINTEXT": "0",
        prefix + "KAFKA_USERNAME": name,
        prefix + "KAFKA_PASSWORD": broker.credentials()[name],
    }


@contextmanager
def _services(broker: KafkaSecure, side: str, run: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    data = WORK / run
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name in ("ingestion", "featurestore"):
            with (data / f"{name}.log").open("ab") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", f"services.{name}"],
                        cwd=ROOT,
                        env=_service_env(broker, side, run, name, data),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def _clients(broker: KafkaSecure, side: str, principal: str) -> tuple[str, dict[str, Any]]:
    if side == "plaintext":
        return f"{broker.config.host}:{PORTS[2]}", {}
    return broker.endpoint(), broker.client_security(principal)


async def _produce(bootstrap: str, security: dict[str, Any], items: list[tuple[bytes, bytes]]) -> None:
    sender = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5, **security
    )
    await sender.start()
    try:
        for i in range(0, len(items), BATCH):
            await asyncio.gather(
                *[await sender.send(topics.raw(USE_CASE), v, key=k) for k, v in items[i : i + BATCH]]
            )
    finally:
        await sender.stop()


async def _written(reader: AIOKafkaConsumer, pending: set[str], procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 300
    while pending:
        for batch in (await reader.getmany(timeout_ms=1000)).values():
            for message in batch:
                event = fs_events.FeaturesWritten.FromString(message.value)
                if event.use_case == USE_CASE:
                    pending.difference_update(event.record_ids)
        dead = [p.args for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            raise RuntimeError(
                f"{len(pending)} records not written ({'exited: ' + str(dead) if dead else 'timeout'})"
            )


async def _start_at_end(broker: KafkaSecure, group: str, *names: str) -> None:
    """Commits ``group``'s offsets at the current end of ``names`` (as admin, before it exists)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.endpoint(), **broker.client_security())
    await admin.start()
    try:
        described = await admin.describe_topics(list(names))
    finally:
        await admin.close()
    tps = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.endpoint(),
        group_id=group,
        enable_auto_commit=False,
        isolation_level="read_committed",
        **broker.client_security(),
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.commit(dict(await consumer.end_offsets(tps)))
    finally:
        await consumer.stop()


async def _side(broker: KafkaSecure, side: str, run: str, seed: int) -> float:
    examples = [e for e, _ in zip(LoanStream(seed=seed), range(WARMUP + N), strict=False)]
    items = [(e.entity_id.encode(), to_json({**e.record, "record_id": e.record_id})) for e in examples]
    bootstrap, reader_security = _clients(broker, side, "admin")
    _, producer_security = _clients(broker, side, producer(USE_CASE))
    # The run's fresh groups start at the topics' ends: no run chews through an earlier one's records.
    await _start_at_end(broker, f"ingestion-bench-{run}", topics.raw(USE_CASE))
    await _start_at_end(broker, f"aif-featurestore-bench-{run}", topics.RECORDS, topics.FEEDBACK)
    with _services(broker, side, run) as procs:
        reader = AIOKafkaConsumer(
            topics.FEATURES_WRITTEN,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="latest",
            enable_auto_commit=False,
            **reader_security,
        )
        await reader.start()
        try:
            while not reader.assignment():
                await asyncio.sleep(0.05)
            await reader.seek_to_end()
            # Warm-up, not timed: groups joined, faust tables ready, Feast's writer loaded.
            await _produce(bootstrap, producer_security, items[:WARMUP])
            await _written(reader, {e.record_id for e in examples[:WARMUP]}, procs)
            started = time.perf_counter()
            await _produce(bootstrap, producer_security, items[WARMUP:])
            await _written(reader, {e.record_id for e in examples[WARMUP:]}, procs)
            elapsed = time.perf_counter() - started
        finally:
            await reader.stop()
    return N / elapsed


def measure_sasl() -> list[Figure]:
    """sasl.pipeline_records_per_s with plaintext.pipeline_records_per_s (same broker) as baseline."""
    shutil.rmtree(WORK / "infra", ignore_errors=True)  # a fresh broker: no state of an earlier run
    broker = _broker()
    broker.ensure()
    try:

        async def both() -> tuple[float, float]:
            await _open_plaintext_side(broker)
            # The services learn the use cases from the broker's catalogue, as deployed; admin
            # then gives each its producer and ACLs (python -m aif.infra kafka-acls).
            await seed_catalogue(f"{broker.config.host}:{PORTS[2]}", topics.USECASES)
            await broker.setup_async([USE_CASE], with_catalogue=True)
            rates: dict[str, list[float]] = {"plaintext": [], "sasl_ssl": []}
            # A-B-B-A rounds: a drift of the shared machine's load weighs on both sides alike.
            for i in range(ROUNDS):
                for side in ("plaintext", "sasl_ssl") if i % 2 == 0 else ("sasl_ssl", "plaintext"):
                    seed = 20 + 2 * i + (side == "sasl_ssl")  # distinct record ids in every run
                    rates[side].append(await _side(broker, side, f"{side}-{i}", seed))
            return statistics.median(rates["sasl_ssl"]), statistics.median(rates["plaintext"])

        sasl, plain = asyncio.run(both())
    finally:
        broker.stop()
    print(f"bench: SASL_SSL {sasl:,.0f} records/s, PLAINTEXT {plain:,.0f} records/s", file=sys.stderr)
    return [
        Figure(
            "sasl.pipeline_records_per_s",
            sasl,
            "records/s",
            "plaintext.pipeline_records_per_s",
            plain,
            note=f"target ≥ {TARGET}× (ingestion + feature store, same broker; median of {ROUNDS} runs each)",
        )
    ]
