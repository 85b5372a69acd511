"""A stream that stops moving exits, and its restart catches up; an idle one stays up.

Real Kafka, a real feature-store process and a Redis of the test's own. Redis is frozen
(SIGSTOP) mid-stream: the online writes hang without an error (the client has no timeout),
which no retry can see. The service must notice that records wait while its consumer
group's offsets do not move, exit for its supervisor (here, the test) to restart it, and
the restart must bring every entity current. Before that, a stream that has read
everything, whose partitions end in a commit marker and an aborted transaction (offsets
that hold no record), must not count as stalled however long it idles.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aif import infra
from aif.stack.catalogue import new_topic as new_catalogue_topic
from aif.stack.catalogue import seed_catalogue
from services.featurestore.app import FATAL_EXIT
from tests.integration.test_featurestore import (
    UC_NAME,
    FeatureStoreProcess,
    free_port,
    loan_examples,
    publish_batches,
    publish_in_transaction,
    wait_until_current,
)
from tests.unit.featurestore.helpers import record_accepted

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# Above faust's first commit after a start (a few seconds; its group forms first).
STALL_S = 20.0
# The lag is measured every 10 s (libs.bus.lag.INTERVAL_S): a stall needs two measurements.
NOTICED_WITHIN_S = STALL_S + 3 * 10 + 15


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[infra.RedisHandle]:
    config = dataclasses.replace(
        infra.InfraConfig.from_env(), infra_dir=tmp_path / "infra", redis_port=free_port()
    )
    handle = infra.ensure_redis(config)
    yield handle
    pid = handle.component.daemon.pid()
    if pid is not None:
        os.kill(pid, signal.SIGCONT)
    handle.stop()


async def test_a_stalled_stream_exits_and_its_restart_catches_up(
    kafka: infra.KafkaHandle, redis: infra.RedisHandle, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:10]
    records = f"fs.records.{run}"
    catalogue = new_catalogue_topic("fs")
    await seed_catalogue(kafka.bootstrap_servers, catalogue)
    port = free_port()
    fs = FeatureStoreProcess(
        {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "AIF_AUTH_MODE": "off",
            "AIF_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
            "AIF_FEATURESTORE_USECASES_TOPIC": catalogue,
            "AIF_FEATURESTORE_GRPC_PORT": str(port),
            "AIF_FEATURESTORE_METRICS_PORT": "0",
            "AIF_FEATURESTORE_RECORDS_TOPIC": records,
            "AIF_FEATURESTORE_FEEDBACK_TOPIC": f"fs.feedback.{run}",
            "AIF_FEATURESTORE_DEAD_LETTER_TOPIC": f"fs.dlq.{run}",
            "AIF_FEATURESTORE_FEATURES_WRITTEN_TOPIC": f"fs.written.{run}",
            "AIF_FEATURESTORE_APP_ID": f"fs-stall-{run}",
            "AIF_FEATURESTORE_FEAST_PROJECT": f"t{run}",
            "AIF_FEATURESTORE_FEAST_REPO": str(tmp_path / "feast"),
            "AIF_FEATURESTORE_DATA_DIR": str(tmp_path / "data"),
            "AIF_FEATURESTORE_ONLINE_STORE": "redis",
            "AIF_FEATURESTORE_REDIS_URL": redis.url,
            "AIF_FEATURESTORE_STALL_TIMEOUT_S": str(STALL_S),
            "AIF_LOG_LEVEL": "INFO",
        },
        tmp_path / "featurestore.log",
        port,
    )
    boot = kafka.bootstrap_servers
    examples = loan_examples(1_200)
    first, rest = examples[:400], examples[400:]
    await asyncio.to_thread(fs.start)
    try:
        # Caught up, the partitions ending in offsets that hold no record: idle is not stuck.
        await publish_batches(boot, records, first)
        t = first[-1].event_time
        await publish_in_transaction(
            boot, records, record_accepted(UC_NAME, "a-txn", "txn-ok", t, first[0].record), commit=True
        )
        await publish_in_transaction(
            boot, records, record_accepted(UC_NAME, "a-txn", "txn-aborted", t, first[0].record), commit=False
        )
        await wait_until_current(fs.target, {e.entity_id: e for e in first})
        await asyncio.sleep(NOTICED_WITHIN_S)
        assert fs.proc is not None and fs.proc.poll() is None, f"an idle stream exited:\n{fs.tail()}"

        # Redis frozen: writes hang. The service must exit on its own, saying why.
        pid = redis.component.daemon.pid()
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        frozen = time.monotonic()
        await publish_batches(boot, records, rest)
        code = await asyncio.to_thread(fs.proc.wait, NOTICED_WITHIN_S + 30)
        took = time.monotonic() - frozen
        assert code == FATAL_EXIT, fs.tail()
        assert "stream stalled: records waiting" in fs.tail()
        assert took >= STALL_S, f"exited after {took:.0f}s, before the stall timeout"
        print(f"stalled stream exited {took:.1f}s after Redis froze (stall timeout {STALL_S:.0f}s)")

        # Redis back, the service restarted (as its supervisor would): everything current.
        os.kill(pid, signal.SIGCONT)
        await asyncio.to_thread(fs.start)
        await wait_until_current(fs.target, {e.entity_id: e for e in examples})
        print(f"all {len(examples)} records current {time.monotonic() - frozen:.1f}s after Redis froze")
    finally:
        if fs.proc is not None and fs.proc.poll() is None:
            fs.stop()
