"""The feature store on the real broker, Feast (SQLite and Redis online stores) and parquet.

- ``test_stream_*``: the service as its own process (``python -m services.featurestore``)
  consumes 2,000 records of loan_approval (the first half in RecordAcceptedBatch messages as
  ingestion sends them, the rest one RecordAccepted per message; plus bad ones, and a Kafka
  transaction that is aborted), is stopped mid-stream (SIGKILL with the SQLite online
  store, SIGTERM with Redis) and restarted; online features
  (via gRPC) and every offline row equal a reference computed independently with pandas
  (rolling time windows per entity), nothing lost, nothing doubled; labels from the
  feedback topic make a point-in-time training set, streamed over gRPC.
- ``test_training_set_*``: crafted cases in-process (real Feast, no broker): no value
  from after an example's event time leaks in, a label observed after the cutoff is not
  used, examples Feast would drop are reported by name instead, and the set built
  crosses ``StreamTrainingSet`` (many batches) as the store wrote it.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from google.protobuf.timestamp_pb2 import Timestamp

from aif import infra
from aif.datagen import Example, LoanStream
from aif.infra.kafka_secure import create_topics
from aif.stack.catalogue import new_topic as new_catalogue_topic
from aif.stack.catalogue import seed_catalogue_sync
from aifactory.common.v1 import common_pb2
from aifactory.featurestore.v1 import featurestore_service_pb2 as pb
from aifactory.featurestore.v1 import featurestore_service_pb2_grpc as pb_grpc
from aifactory.featurestore.v1.events_pb2 import FeaturesWritten
from libs.bus import EventPublisher, Outgoing
from libs.bus import headers as h
from libs.errors import FailedPrecondition
from libs.features import feature_versions
from libs.lifecycle.data import GrpcTrainingData
from libs.lifecycle.frames import Window
from libs.rpc import RpcServer, insecure_channel
from libs.rpc.healthcheck import check
from libs.telemetry import setup_telemetry
from libs.usecase import UseCase, load_default
from services.featurestore.batch import Incoming, RecordProcessor, partition_of
from services.featurestore.core import FeatureStoreCore
from services.featurestore.servicer import FeatureStoreServicer
from services.featurestore.settings import FeatureStoreSettings
from services.featurestore.store.layout import RECORD_ID, columns_digest
from services.ingestion.publisher import accepted_message, batched
from tests.unit.featurestore.helpers import feedback, from_example, headers_for, record_accepted

pytestmark = [pytest.mark.integration]

UC_NAME = "loan_approval"
USECASES = load_default()
UC = USECASES[UC_NAME]
N = 2_000
APPLICANTS = 150
# An entity comes back every APPLICANTS * INTERVAL = a quarter of the longest window, and
# the 2,000 records span ~3 such windows: the windows hold a few records each, slide and prune.
INTERVAL = max(a.window for a in UC.features.aggregates) / 600
KILL_AFTER = 1_000


def aggregate_name(kind: str, source: str | None = None) -> str:
    return next(a.name for a in UC.features.aggregates if a.aggregate == kind and a.source == source)


COUNT, MEAN, MAX = aggregate_name("count"), aggregate_name("mean", "loan"), aggregate_name("max", "loan")


# -- the pandas reference (independent of libs.features) ---------------------------------


def reference(uc: UseCase, examples: list[Example]) -> pd.DataFrame:
    """Every record's features as of its event time, indexed by record id."""
    df = pd.DataFrame(
        [{**e.record, "_rid": e.record_id, "_entity": e.entity_id, "_t": e.event_time} for e in examples]
    )
    out = pd.DataFrame(index=df.index)
    for f in uc.features.row:
        src = df[f.source].astype("float64") if f.transform != "one_hot" else df[f.source]
        if f.transform == "identity":
            out[f.name] = src
        elif f.transform == "log1p":
            out[f.name] = np.where(src > -1, np.log1p(src.clip(lower=-0.5)), np.nan)
        elif f.transform == "ratio":
            other = df[f.other].astype("float64")
            out[f.name] = np.where(other == 0, 0.0, src / other.replace(0, np.nan))
        else:
            for c in uc.fields[f.source].enum or ():
                out[f"{f.name}__{c}"] = (src == c).astype("float64")
    ordered = df.assign(_one=1.0).sort_values(["_entity", "_t"], kind="stable")
    for a in uc.features.aggregates:
        rolling = ordered.groupby("_entity").rolling(f"{int(a.window.total_seconds())}s", on="_t")
        column = "_one" if a.aggregate == "count" else a.source
        series = {
            "count": lambda r, c=column: r[c].sum(),
            "sum": lambda r, c=column: r[c].sum(),
            "mean": lambda r, c=column: r[c].mean(),
            "min": lambda r, c=column: r[c].min(),
            "max": lambda r, c=column: r[c].max(),
            "last": lambda r, c=column: r[c].apply(lambda s: s.dropna().iloc[-1], raw=False),
        }[a.aggregate](rolling)
        # Groups come out in key order, each in time order: the order of ``ordered``.
        out[a.name] = pd.Series(series.to_numpy(), index=ordered.index).reindex(df.index)
    out = out[uc.model_inputs()]
    out["_entity"], out["_t"] = df["_entity"], df["_t"]
    return out.set_index(df["_rid"])


def close(a: float | None, b: float | None) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    return b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


# -- the service as a process ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class FeatureStoreProcess:
    env: dict[str, str]
    log: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    starts: list[float] = field(default_factory=list)
    # The records topic is partitioned unlike the state table: the stream must repartition.
    repartition: bool = False

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> None:
        started = time.monotonic()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.featurestore"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while not check(self.target, timeout=0.5):
            assert self.proc.poll() is None, f"feature store exited {self.proc.returncode}:\n{self.tail()}"
            assert time.monotonic() - started < timeout, f"not healthy after {timeout}s:\n{self.tail()}"
            time.sleep(0.2)
        self.starts.append(time.monotonic() - started)

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@dataclass(frozen=True)
class Topics:
    records: str
    feedback: str
    dead_letter: str
    features_written: str


# "sqlite-repartition": the records topic has 2 partitions, the state table 3, so the stream
# repartitions by entity through its own topic first (otherwise it reads records as they are).
@pytest.fixture(params=["sqlite", "redis", "sqlite-repartition"])
def service(
    request: pytest.FixtureRequest, kafka: infra.KafkaHandle, tmp_path: Path
) -> Iterator[tuple[FeatureStoreProcess, Topics, Path]]:
    run = uuid.uuid4().hex[:10]
    topics = Topics(f"fs.records.{run}", f"fs.feedback.{run}", f"fs.dlq.{run}", f"fs.written.{run}")
    store = request.param.removesuffix("-repartition")
    if request.param.endswith("-repartition"):
        asyncio.run(create_topics(kafka.bootstrap_servers, {}, [topics.records], partitions=2))
    # The process alone (no registry) learns the shipped specs from a catalogue of its own.
    catalogue = new_catalogue_topic("fs")
    seed_catalogue_sync(kafka.bootstrap_servers, catalogue)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "AIF_AUTH_MODE": "off",
        "AIF_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
        "AIF_FEATURESTORE_USECASES_TOPIC": catalogue,
        "AIF_FEATURESTORE_GRPC_PORT": str(free_port()),
        "AIF_FEATURESTORE_METRICS_PORT": "0",
        "AIF_FEATURESTORE_RECORDS_TOPIC": topics.records,
        "AIF_FEATURESTORE_FEEDBACK_TOPIC": topics.feedback,
        "AIF_FEATURESTORE_DEAD_LETTER_TOPIC": topics.dead_letter,
        "AIF_FEATURESTORE_FEATURES_WRITTEN_TOPIC": topics.features_written,
        "AIF_FEATURESTORE_APP_ID": f"fs-test-{run}",
        "AIF_FEATURESTORE_FEAST_PROJECT": f"t{run}",
        "AIF_FEATURESTORE_FEAST_REPO": str(tmp_path / "feast"),
        "AIF_FEATURESTORE_DATA_DIR": str(tmp_path / "data"),
        "AIF_FEATURESTORE_PARTITIONS": "3",
        "AIF_FEATURESTORE_ONLINE_STORE": store,
        "AIF_LOG_LEVEL": os.environ.get("FS_LOG", "INFO"),
    }
    redis = infra.ensure_redis() if store == "redis" else None
    if redis is not None:
        env["AIF_FEATURESTORE_REDIS_URL"] = redis.url
    proc = FeatureStoreProcess(
        env,
        tmp_path / "featurestore.log",
        int(env["AIF_FEATURESTORE_GRPC_PORT"]),
        repartition=request.param.endswith("-repartition"),
    )
    yield proc, topics, tmp_path / "data"
    if proc.proc is not None and proc.proc.poll() is None:
        proc.stop()
    if redis is not None:
        redis.stop()  # only if this test started it


def loan_examples(n: int = N) -> list[Example]:
    start = datetime.now(UTC) - n * INTERVAL - timedelta(hours=1)
    out: list[Example] = []
    for ex in LoanStream(
        seed=11, applicants=APPLICANTS, start=start, interval=INTERVAL, label_delay=3 * INTERVAL
    ):
        out.append(ex)
        if len(out) == n:
            return out
    return out


def offline_rows(data: Path) -> pd.DataFrame:
    """The offline feature rows as any reader sees them (retried across a compaction)."""
    path = data / "offline" / UC_NAME / f"f-{columns_digest(UC)}" / "features"
    for _ in range(20):
        try:
            return ds.dataset(str(path), format="parquet").to_table().to_pandas()
        except (FileNotFoundError, OSError):
            time.sleep(0.1)
    raise AssertionError("offline dataset unreadable")


def count_rows(path: Path) -> int:
    try:
        return ds.dataset(str(path), format="parquet").count_rows() if path.exists() else 0
    except (FileNotFoundError, OSError):
        return -1


BAD = {  # record id → (aif-dlq-error, part of the reason)
    "bad-garbage": ("undecodable", "not a valid aifactory.ingestion.v1.RecordAccepted"),
    "bad-usecase": ("use_case", "unknown use case 'no_such_case'"),
    "bad-number": ("feature", "loan"),
    "bad-type": ("event_type", "is not aifactory.ingestion.v1.RecordAccepted"),
}


async def publish_bad(bootstrap: str, topic: str, which: list[str]) -> None:
    async with EventPublisher(bootstrap, producer="test") as pub:
        now = datetime.now(UTC)
        for rid in which:
            if rid == "bad-garbage":
                await pub.send_raw(
                    topic,
                    b"\x08\xff\xff not protobuf",
                    key=b"x",
                    headers=[
                        (h.EVENT_TYPE, b"aifactory.ingestion.v1.RecordAccepted"),
                        (h.EVENT_ID, rid.encode()),
                    ],
                )
            elif rid == "bad-usecase":
                await pub.publish(
                    topic,
                    record_accepted("no_such_case", "e", rid, now, {}),
                    use_case="x",
                    key="x",
                    event_id=rid,
                )
            elif rid == "bad-number":
                event = record_accepted(UC_NAME, "a-bad", rid, now, {"loan": "lots", "salary": 1.0})
                await pub.publish(topic, event, use_case=UC_NAME, key=f"{UC_NAME}/a-bad", event_id=rid)
            else:
                event = record_accepted(UC_NAME, "a-bad", rid, now, {"loan": 1.0, "salary": 1.0})
                headers = [(k, v) for k, v in headers_for(event) if k not in (h.EVENT_TYPE, h.EVENT_ID)]
                await pub.send_raw(
                    topic,
                    event.SerializeToString(),
                    key=f"{UC_NAME}/a-bad".encode(),
                    headers=[
                        *headers,
                        (h.EVENT_ID, rid.encode()),
                        (h.EVENT_TYPE, b"aifactory.trainer.v1.TrainingRequested"),
                    ],
                )


async def publish_records(bootstrap: str, topic: str, examples: list[Example]) -> None:
    """One RecordAccepted per message, keyed by entity (what an outside producer may send)."""
    async with EventPublisher(bootstrap, producer="test") as pub:
        for i in range(0, len(examples), 250):
            await pub.publish_many(
                [
                    Outgoing(
                        topic,
                        from_example(UC_NAME, e),
                        UC_NAME,
                        key=f"{UC_NAME}/{e.entity_id}",
                        event_id=e.record_id,
                    )
                    for e in examples[i : i + 250]
                ]
            )


async def publish_batches(bootstrap: str, topic: str, examples: list[Example], per_message: int = 40) -> None:
    """RecordAcceptedBatch messages, each in the partition of its records' entities (what ingestion sends)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        by_partition: dict[int, list[Any]] = {}
        for e in examples:
            message = accepted_message(topic, from_example(UC_NAME, e))
            by_partition.setdefault(partition_of(message.key or b"", len(partitions)), []).append(message)
        futures = [
            await producer.send(topic, m.value, key=m.key, headers=m.headers, partition=partition)
            for partition, messages in by_partition.items()
            for m in batched(messages, per_message)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def publish_in_transaction(bootstrap: str, topic: str, event: Any, *, commit: bool) -> None:
    """What ingestion does when it uses Kafka transactions; an aborted one must never count."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"fs-test-{uuid.uuid4().hex}")
    await producer.start()
    try:
        await producer.begin_transaction()
        await producer.send_and_wait(
            topic, event.SerializeToString(), key=f"{UC_NAME}/a-txn".encode(), headers=headers_for(event)
        )
        await (producer.commit_transaction() if commit else producer.abort_transaction())
    finally:
        await producer.stop()


async def online(
    target: str, entity_ids: list[str], names: list[str] | None = None
) -> pb.GetOnlineFeaturesResponse:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.FeatureStoreServiceStub(channel)
        return await stub.GetOnlineFeatures(
            pb.GetOnlineFeaturesRequest(use_case=UC_NAME, entity_ids=entity_ids, feature_names=names or []),
            timeout=30,
        )


async def wait_until_current(target: str, last: dict[str, Example], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    ids = sorted(last)
    while True:
        reply = await online(target, ids)
        behind = [r.entity_id for r in reply.rows if r.record_id != last[r.entity_id].record_id]
        if not behind:
            return
        assert time.monotonic() < deadline, f"{len(behind)} entities not current, e.g. {behind[:5]}"
        await asyncio.sleep(0.25)


async def dead_letters(bootstrap: str, topic: str, n: int, timeout: float = 30) -> list[Any]:
    """At least ``n`` messages of ``topic``, and whatever else comes within a second after."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            while len(out) < n:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    out.extend(batch)
        await asyncio.sleep(1)  # nothing more should come
        for batch in (await consumer.getmany(timeout_ms=500)).values():
            out.extend(batch)
    finally:
        await consumer.stop()
    return out


@pytest.mark.timeout(420)
async def test_stream_survives_a_restart_and_matches_a_pandas_reference(
    service: tuple[FeatureStoreProcess, Topics, Path], kafka: infra.KafkaHandle
) -> None:
    fs, topics, data = service
    boot = kafka.bootstrap_servers
    examples = loan_examples()
    ref = reference(UC, examples)
    fs.start()

    # First half in batches as ingestion sends them (and two bad messages), then SIGKILL while
    # it is still working through them.
    await publish_bad(boot, topics.records, ["bad-garbage", "bad-usecase"])
    await publish_batches(boot, topics.records, examples[:KILL_AFTER])
    features_dir = data / "offline" / UC_NAME / f"f-{columns_digest(UC)}" / "features"
    deadline = time.monotonic() + 60
    while count_rows(features_dir) < 200:
        assert time.monotonic() < deadline, fs.tail()
        await asyncio.sleep(0.05)
    # SIGKILL with SQLite; a graceful SIGTERM (in-flight batch finished, then stop) with Redis.
    graceful = fs.env["AIF_FEATURESTORE_ONLINE_STORE"] == "redis"
    if graceful:
        assert fs.stop() == 0, fs.tail()
    else:
        fs.kill()
    killed_at = count_rows(features_dir)

    # The rest arrives while it is down, one record per message, with two more bad messages
    # and two transactions.
    await publish_records(boot, topics.records, examples[KILL_AFTER:])
    await publish_bad(boot, topics.records, ["bad-number", "bad-type"])
    t_txn = examples[-1].event_time
    aborted = record_accepted(UC_NAME, "a-txn", "txn-aborted", t_txn, {**examples[0].record, "loan": 1e6})
    committed = record_accepted(UC_NAME, "a-txn", "txn-committed", t_txn, examples[0].record)
    await publish_in_transaction(boot, topics.records, aborted, commit=False)
    await publish_in_transaction(boot, topics.records, committed, commit=True)
    fs.start()

    last: dict[str, Example] = {}
    for e in examples:
        last[e.entity_id] = e
    await wait_until_current(fs.target, last)
    assert ("repartitioning by entity" in fs.log.read_text(errors="replace")) == fs.repartition

    # Online: every entity equals the reference as of its newest record.
    entities = sorted(last)
    reply = await online(fs.target, [*reversed(entities), "a-never-seen"])
    assert [r.entity_id for r in reply.rows] == [*reversed(entities), "a-never-seen"]
    versions = feature_versions(UC)
    assert [(f.name, f.version) for f in reply.features] == list(versions.items())
    mismatches = []
    for row in reply.rows[:-1]:
        want = ref.loc[last[row.entity_id].record_id]
        assert row.found and dict(row.feature_versions) == versions
        for c in UC.model_inputs():
            got = row.values[c].double_value if row.values[c].HasField("double_value") else None
            if not close(want[c], got):
                mismatches.append((row.entity_id, c, want[c], got))
    assert not mismatches, mismatches[:10]
    assert not reply.rows[-1].found and reply.rows[-1].values["loan"].HasField("null_value")

    # Offline: every record exactly once, each row equal to the reference at its event time.
    rows = offline_rows(data)
    txn = rows[rows[UC.entity.field] == "a-txn"]
    assert txn[RECORD_ID].tolist() == ["txn-committed"]  # read_committed: the aborted one never counted
    rows = rows[rows[UC.entity.field] != "a-txn"].set_index(RECORD_ID)
    assert rows.index.is_unique and len(rows) == N, (len(rows), rows.index.duplicated().sum())
    assert rows[UC.entity.field].value_counts().to_dict() == ref["_entity"].value_counts().to_dict()
    got = rows.loc[ref.index, UC.model_inputs()]
    diff = [
        (rid, c)
        for c in UC.model_inputs()
        for rid, a, b in zip(ref.index, ref[c], got[c], strict=True)
        if not close(a, b)
    ]
    assert not diff, diff[:10]

    # Every bad message is dead-lettered once, with its reason; nothing else is.
    letters = await dead_letters(boot, topics.dead_letter, len(BAD))
    by_id = {dict(r.headers)[h.EVENT_ID].decode(): dict(r.headers) for r in letters}
    assert len(letters) == len(BAD) and set(by_id) == set(BAD), [dict(r.headers) for r in letters]
    for rid, (error, reason) in BAD.items():
        assert by_id[rid][h.DLQ_ERROR].decode() == error
        assert reason in by_id[rid][h.DLQ_REASON].decode()

    # FeaturesWritten events name every record written (a replayed batch may name some twice).
    written = await dead_letters(boot, topics.features_written, 1, timeout=10)
    named: set[str] = set()
    for r in written:
        named.update(FeaturesWritten.FromString(r.value).record_ids)
    assert named == {e.record_id for e in examples} | {"txn-committed"}

    # Labels arrive as feedback; the training set joins them at label time, features as of event time.
    async with EventPublisher(boot, producer="test") as pub:
        await pub.publish_many(
            [Outgoing(topics.feedback, feedback(UC_NAME, e), UC_NAME, key=e.entity_id) for e in examples]
        )
    labels_dir = data / "offline" / UC_NAME / "labels"
    deadline = time.monotonic() + 60
    while count_rows(labels_dir) < N:
        assert time.monotonic() < deadline, fs.tail()
        await asyncio.sleep(0.2)
    # Cutoff between examples 1500 and 1501: the labels of 1498-1500 are only seen after it.
    end = examples[1_500].event_time + INTERVAL / 2
    expected = [e for e in examples if e.event_time < end and e.label_time <= end]
    assert len(expected) == 1_498
    request = pb.GetTrainingSetRequest(
        use_case=UC_NAME, time_range=common_pb2.TimeRange(start=_ts(examples[0].event_time), end=_ts(end))
    )
    async with grpc.aio.insecure_channel(fs.target) as channel:
        stub = pb_grpc.FeatureStoreServiceStub(channel)
        ts = await stub.GetTrainingSet(request, timeout=120)
        again = await stub.GetTrainingSet(request, timeout=120)
        # The rows cross the wire (no path is handed over): what the trainer and evaluator read.
        streamed = await GrpcTrainingData(channel).get_training_set(
            UC_NAME, Window(examples[0].event_time, end)
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetOnlineFeatures(pb.GetOnlineFeaturesRequest(use_case="nope", entity_ids=["a"]))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetOnlineFeatures(
                pb.GetOnlineFeaturesRequest(
                    use_case=UC_NAME, entity_ids=["a"], feature_names=["loan", "shoe_size"]
                )
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "shoe_size" in err.value.details()
    assert ts.row_count == len(expected) and ts.label == "label" and (ts.uri, ts.format) == ("", "")
    assert ts.content_hash == again.content_hash == streamed.content_hash
    assert [d.version for d in ts.datasets] == ["ds-1"] == [d.version for d in streamed.datasets]
    assert [f.name for f in ts.features] == UC.model_inputs() == [f.name for f in streamed.features]
    assert streamed.uri == f"featurestore://{UC_NAME}/training-sets/{ts.content_hash}"
    assert streamed.quarantined == dict(ts.quarantined)
    frame = streamed.frame
    assert len(frame) == ts.row_count
    assert list(frame.columns[:4]) == ["entity_id", "event_time", "label_time", "label"]
    assert list(frame.columns[4 : 4 + len(UC.model_inputs())]) == UC.model_inputs()
    assert (frame[UC.model_inputs()].dtypes == "float64").all()
    assert (frame["label_time"] <= pd.Timestamp(end)).all()
    by_key = {(e.entity_id, pd.Timestamp(e.event_time)): e for e in expected}
    for _, r in frame.iterrows():
        ex = by_key[(r["entity_id"], r["event_time"])]
        assert r["label"] == ex.label and r["gender"] == ex.record["gender"]
        want = ref.loc[ex.record_id]
        bad = [c for c in UC.model_inputs() if not close(want[c], r[c])]
        assert not bad, (ex.record_id, bad)

    assert fs.stop() == 0, fs.tail()
    print(
        f"\nfeature store ({fs.env['AIF_FEATURESTORE_ONLINE_STORE']}): started in "
        f"{', '.join(f'{s:.1f}s' for s in fs.starts)}; {'stopped' if graceful else 'killed'} with "
        f"{killed_at} of {KILL_AFTER} rows written"
    )


def _ts(at: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(at)
    return ts


# -- point-in-time training sets, in-process ------------------------------------------


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> FeatureStoreCore:
    root = tmp_path_factory.mktemp("pit")
    settings = FeatureStoreSettings(
        feast_repo=root / "feast",
        data_dir=root / "data",
        stream_enabled=False,
        feast_project=f"pit{uuid.uuid4().hex[:8]}",
        metrics_port=0,
    )
    return FeatureStoreCore.open(settings, USECASES)


T = datetime(2026, 5, 1, 12, tzinfo=UTC)


def write(
    core: FeatureStoreCore,
    records: list[tuple[str, str, datetime, float]],
    labels: list[tuple[str, str, datetime, int, datetime]],
) -> None:
    """records: (entity, record id, event time, loan); labels: (entity, record id, event time, label, label time)."""
    base = {
        "salary": 50_000.0,
        "commission": 0.0,
        "age": 40,
        "elevel": 1,
        "car": 2,
        "zipcode": 3,
        "hvalue": 1e5,
        "hyears": 3,
        "gender": "f",
    }
    events = [record_accepted(UC_NAME, e, rid, at, {**base, "loan": loan}) for e, rid, at, loan in records]
    out = RecordProcessor(USECASES).records(
        [Incoming("t", 0, i, None, ev.SerializeToString(), headers_for(ev)) for i, ev in enumerate(events)],
        lambda k: None,
    )
    assert not out.dead
    fb = []
    for e, rid, at, label, seen in labels:
        event = feedback(UC_NAME, Example({}, rid, e, at, label, seen))
        fb.append(Incoming("f", 0, len(fb), None, event.SerializeToString(), headers_for(event)))
    got = RecordProcessor(USECASES).feedback(fb)
    assert not got.dead
    core.writer.write(out.rows, got.labels)


@pytest.mark.timeout(120)
def test_training_set_is_point_in_time_correct(core: FeatureStoreCore) -> None:
    s = timedelta(seconds=1)
    write(
        core,
        [("p1", "p1-a", T, 100.0), ("p1", "p1-b", T + 10 * s, 1_000.0), ("p1", "p1-c", T + 20 * s, 5.0)],
        [("p1", "p1-a", T, 1, T + 5 * s), ("p1", "p1-b", T + 10 * s, 0, T + 15 * s)],
    )
    # Cutoff at +12 s: example b happened before it, but its label was only seen at +15 s.
    early = core.training_set(UC_NAME, T, T + 12 * s)
    frame = pd.read_parquet(early.path)
    assert early.row_count == len(frame) == 1
    row = frame.iloc[0]
    # Nothing from b (+10 s) or c (+20 s) leaks into a's features.
    assert (row["loan"], row[MAX], row[MEAN], row[COUNT]) == (100.0, 100.0, 100.0, 1.0)
    late = pd.read_parquet(core.training_set(UC_NAME, T, T + 30 * s).path)
    assert late["label"].tolist() == [1, 0]
    b = late.iloc[1]
    assert (b["loan"], b[MAX], b[MEAN], b[COUNT]) == (1_000.0, 1_000.0, 550.0, 2.0)
    assert late.iloc[0][MAX] == 100.0  # still as of a's own time


@pytest.mark.timeout(120)
def test_training_set_quarantines_labels_without_a_feature_row_of_their_own(core: FeatureStoreCore) -> None:
    s = timedelta(seconds=1)
    t = T + timedelta(days=2)
    # q1 is fine. q2's only feature row is another, later record. q3 never had a feature
    # row. q4 has an older row (q4-a), and a label for a record ingestion never stored
    # (q4-rejected): Feast's as-of join would hand it q4-a's features.
    write(
        core,
        [("q1", "q1-a", t, 10.0), ("q2", "q2-late", t + 60 * s, 10.0), ("q4", "q4-a", t + 5 * s, 7.0)],
        [
            ("q1", "q1-a", t, 1, t + s),
            ("q2", "q2-x", t + 30 * s, 0, t + 31 * s),
            ("q3", "q3-x", t + 40 * s, 1, t + 41 * s),
            ("q4", "q4-rejected", t + 50 * s, 1, t + 51 * s),
        ],
    )
    ts = core.training_set(UC_NAME, t, t + 120 * s)
    frame = pd.read_parquet(ts.path)
    assert frame["entity_id"].tolist() == ["q1"] and ts.row_count == 1
    assert ts.quarantined == {"no_feature_row": 3, "entity_mismatch": 0, "ambiguous_event_time": 0}


@pytest.mark.timeout(120)
async def test_training_set_streams_as_built(core: FeatureStoreCore) -> None:
    """The real join's set crosses StreamTrainingSet in many batches: the frame is the file
    the store wrote, its content hash checks, its quarantine counts cross."""
    s = timedelta(seconds=1)
    t = T + timedelta(days=4)
    records = [(f"s{i % 40}", f"s-{i}", t + i * s, float(i)) for i in range(400)]
    labels = [(e, rid, at, i % 2, at + s) for i, (e, rid, at, _) in enumerate(records)]
    write(core, records, [*labels, ("s1", "s-never", t + 500 * s, 1, t + 501 * s)])
    built = await asyncio.to_thread(core.training_set, UC_NAME, t, t + 600 * s)
    server = RpcServer("127.0.0.1:0", setup_telemetry("test"))
    server.add_service(
        pb_grpc.add_FeatureStoreServiceServicer_to_server,
        FeatureStoreServicer(core, batch_bytes=8 * 1024),
        pb.DESCRIPTOR.services_by_name["FeatureStoreService"].full_name,
    )
    port = await server.start()
    try:
        async with insecure_channel(f"127.0.0.1:{port}") as channel:
            streamed = await GrpcTrainingData(channel).get_training_set(UC_NAME, Window(t, t + 600 * s))
            messages = [
                m
                async for m in pb_grpc.FeatureStoreServiceStub(channel).StreamTrainingSet(
                    pb.StreamTrainingSetRequest(
                        use_case=UC_NAME, time_range=common_pb2.TimeRange(start=_ts(t), end=_ts(t + 600 * s))
                    )
                )
            ]
    finally:
        await server.stop()
    assert len(messages) > 10 and built.row_count == 400
    pd.testing.assert_frame_equal(streamed.frame, pd.read_parquet(built.path))
    assert streamed.content_hash == built.content_hash
    assert streamed.quarantined == {"no_feature_row": 1, "entity_mismatch": 0, "ambiguous_event_time": 0}


@pytest.mark.timeout(120)
def test_training_set_refuses_when_no_label_joins(core: FeatureStoreCore) -> None:
    t = T + timedelta(days=3)
    write(core, [], [("z9", "z9-x", t, 1, t + timedelta(seconds=1))])
    with pytest.raises(FailedPrecondition) as info:
        core.training_set(UC_NAME, t, t + timedelta(minutes=1))
    assert "1 no_feature_row" in info.value.message
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
