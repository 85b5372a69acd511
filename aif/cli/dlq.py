"""``aif dlq list|replay``: the dead-letter topic, read and replayed.

Dead letters are Kafka messages (``aif.deadletter`` by default; ``--topic`` or the
context's ``dead-letter-topic``), read here with no consumer group, so listing them
moves nobody's offsets. Two kinds:

- records ingestion refused (``RecordRejected``: the payload as received and every
  violation): ``replay`` sends the payload again through ingestion's gRPC API, as a
  producer would once the contract or the data is fixed; the request id is the dead
  letter's position, so replaying it twice does not ingest it twice;
- events a consumer could not handle (the original bytes and headers, plus why): ``replay``
  publishes them again, headers and key unchanged, to the topic they came from, whose
  consumers are idempotent by event id.

A dead letter is named ``PARTITION:OFFSET`` (``aif dlq list`` shows them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.table import Table

from aif.cli.output import REFUSED, CliError, out
from aif.cli.remote import Remote, remote, run
from aifactory.common.v1 import common_pb2
from aifactory.ingestion.v1 import events_pb2 as ing_events
from aifactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from aifactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from libs.bus import headers as h
from libs.bus.types import event_type_of

app = typer.Typer(help="dead letters: list them, replay them", no_args_is_help=True)
REJECTED = event_type_of(ing_events.RecordRejected)
Json = Annotated[bool, typer.Option("--json", help="print JSON")]
Topic = Annotated[str | None, typer.Option(help="dead-letter topic (default: the context's)")]
UseCase = Annotated[str, typer.Option("--use-case", "-u", help="only this use case's")]


@dataclass
class DeadLetter:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"

    def header(self, name: str) -> str:
        return next((v.decode("utf-8", "replace") for k, v in self.headers if k == name), "")

    def rejected(self) -> ing_events.RecordRejected | None:
        if self.header(h.EVENT_TYPE) != REJECTED:
            return None
        return ing_events.RecordRejected.FromString(self.value)

    def describe(self) -> dict[str, Any]:
        rejected = self.rejected()
        data: dict[str, Any] = {"id": self.id, "timestamp_ms": self.timestamp_ms}
        if rejected is not None:
            data |= {
                "kind": "rejected_record",
                "use_case": rejected.use_case,
                "record_id": rejected.record_id,
                "source": f"{rejected.source_topic}/{rejected.source_partition}/{rejected.source_offset}"
                if rejected.source_topic
                else "grpc",
                "reasons": [f"{v.field or '(record)'} {v.code}: {v.message}" for v in rejected.violations],
                "truncated": rejected.original_truncated,
            }
        else:
            data |= {
                "kind": "event",
                "use_case": self.header(h.USE_CASE),
                "event_type": self.header(h.EVENT_TYPE),
                "source": self.header(h.DLQ_SOURCE),
                "consumer_group": self.header(h.DLQ_GROUP),
                "reasons": [f"{self.header(h.DLQ_ERROR)}: {self.header(h.DLQ_REASON)}"],
            }
        return data


async def _partitions(bootstrap: str, kafka: dict[str, Any], topic: str) -> list[int]:
    """The topic's partitions, from its own metadata only (not the whole cluster's)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"]:  # e.g. 3: no such topic, so no dead letter yet
        return []
    return sorted(p["partition"] for p in described["partitions"])


async def read(r: Remote, topic: str, limit: int, use_case: str = "") -> list[DeadLetter]:
    """The newest ``limit`` dead letters (of ``use_case``), oldest first."""
    try:
        return await _read(r.settings["kafka"], r.kafka(), topic, limit, use_case)
    except KafkaError as exc:  # Kafka down or unresolvable: one line
        raise CliError(
            f"Kafka at {r.settings['kafka']}: {type(exc).__name__}: {exc}; check --kafka"
        ) from None


async def _read(
    bootstrap: str, kafka: dict[str, Any], topic: str, limit: int, use_case: str
) -> list[DeadLetter]:
    partitions = await _partitions(bootstrap, kafka, topic)
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        **kafka,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        begins, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        found: list[DeadLetter] = []
        for tp in tps:
            if ends[tp] <= begins[tp]:
                continue
            # Without a use-case filter only the last `limit` of each partition can matter.
            consumer.seek(tp, begins[tp] if use_case else max(begins[tp], ends[tp] - limit))
        pending = {tp for tp in tps if ends[tp] > begins[tp]}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=2000)
            for messages in batches.values():
                for m in messages:
                    letter = DeadLetter(
                        m.partition, m.offset, m.timestamp, m.key, m.value or b"", list(m.headers or ())
                    )
                    if not use_case or letter.describe()["use_case"] == use_case:
                        found.append(letter)
            # The position, not the last message: transaction markers take offsets too.
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
            if not batches:
                break
    finally:
        await consumer.stop()
    found.sort(key=lambda d: (d.timestamp_ms, d.partition, d.offset))
    return found[-limit:]


@app.command("list", help="the newest dead letters, with why each was refused")
def list_(
    ctx: typer.Context,
    use_case: UseCase = "",
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    topic: Topic = None,
    json_output: Json = False,
) -> None:
    r = remote(ctx)
    letters = run(read(r, topic or r.settings["dead-letter-topic"], limit, use_case))
    rows = [d.describe() for d in letters]

    def render(c: Console) -> None:
        if not rows:
            c.print("no dead letter" + (f" of {use_case}" if use_case else ""))
            return
        table = Table("id", "kind", "use case", "source", "why", box=None)
        for row in rows:
            table.add_row(
                row["id"], row["kind"], row["use_case"], row["source"], "; ".join(row["reasons"])[:120]
            )
        c.print(table)

    out(json_output, rows, render)


@app.command(help="send dead letters again: refused records through ingestion, events to their topic")
def replay(
    ctx: typer.Context,
    ids: Annotated[
        list[str] | None, typer.Argument(metavar="[ID]...", help="PARTITION:OFFSET (default: all listed)")
    ] = None,
    use_case: UseCase = "",
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="how many of the newest to consider")] = 1000,
    topic: Topic = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would be sent; send nothing")] = False,
    json_output: Json = False,
) -> None:
    r = remote(ctx)
    name = topic or r.settings["dead-letter-topic"]
    if not ids and not use_case:
        raise CliError("name dead letters (ID...) or a --use-case to replay: aif dlq list shows them")

    async def go() -> list[dict[str, Any]]:
        letters = await read(r, name, limit, use_case)
        if ids:
            wanted = set(ids)
            letters = [d for d in letters if d.id in wanted]
            missing = wanted - {d.id for d in letters}
            if missing:
                raise CliError(
                    f"no dead letter {', '.join(sorted(missing))} among the newest {limit}: aif dlq list",
                    REFUSED,
                )
        results = []
        for d in letters:
            results.append({"id": d.id, **(await _replay_one(r, name, d, dry_run))})
        return results

    results = run(go())
    text = "\n".join(f"{x['id']}: {x['outcome']} {x.get('detail', '')}".rstrip() for x in results)
    out(json_output, results, lambda c: c.print(text or "no dead letter to replay", markup=False))
    if any(x["outcome"] == "rejected again" for x in results):
        raise typer.Exit(REFUSED)


async def _replay_one(r: Remote, topic: str, d: DeadLetter, dry_run: bool) -> dict[str, Any]:
    rejected = d.rejected()
    if rejected is not None:
        if rejected.original_truncated:
            return {"outcome": "skipped", "detail": "the payload was truncated when dead-lettered"}
        if rejected.content_type == h.PROTOBUF:
            item = ing_pb.IngestItem(record=common_pb2.Record.FromString(rejected.original))
        else:
            item = ing_pb.IngestItem(json=rejected.original.decode("utf-8", "replace"))
        if dry_run:
            return {"outcome": "would be ingested", "detail": rejected.use_case}
        async with r.channel("ingestion") as channel:
            reply = await ing_grpc.IngestionServiceStub(channel).Ingest(
                ing_pb.IngestRequest(
                    use_case=rejected.use_case, items=[item], request_id=f"dlq:{topic}:{d.id}"
                ),
                timeout=30,
            )
        result = reply.results[0]
        if result.accepted:
            return {"outcome": "ingested", "detail": result.record_id}
        why = "; ".join(f"{v.field or '(record)'} {v.code}: {v.message}" for v in result.violations)
        return {"outcome": "rejected again", "detail": why}
    source = d.header(h.DLQ_SOURCE).rsplit("/", 2)[0]
    if not source:
        return {"outcome": "skipped", "detail": "no source topic in its headers"}
    if dry_run:
        return {"outcome": "would be published", "detail": source}
    producer = AIOKafkaProducer(bootstrap_servers=r.settings["kafka"], acks="all", **r.kafka())
    await producer.start()
    try:
        headers = [(k, v) for k, v in d.headers if not k.startswith("aif-dlq-")]
        await producer.send_and_wait(source, d.value, key=d.key, headers=headers)
    finally:
        await producer.stop()
    return {"outcome": "published", "detail": source}
