"""The catalogue follower on a real broker: replay from the beginning to the end offsets at
start (no listener called), then live changes in order, then ``sync``; a topic created
compacted, an unreadable entry skipped."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import yaml
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from aif import infra
from aifactory.registry.v1 import events_pb2 as registry_events
from libs.bus import EventPublisher, Outgoing
from libs.bus.admin import CREATED, PRESENT, ensure_catalogue_topic
from libs.settings import UseCaseSourceSettings
from libs.usecase import DEFAULT_DIR
from libs.usecase.catalogue import Change, ChangeKind
from libs.usecase.follower import load_catalogue

LOAN = (DEFAULT_DIR / "loan_approval.yaml").read_text()
SEGMENTS = (DEFAULT_DIR / "image_segments.yaml").read_text()


class _Settings(UseCaseSourceSettings):
    service = "followtest"


def renamed(text: str, name: str, version: int = 1, **drift: float) -> str:
    data = yaml.safe_load(text)
    data["name"], data["version"] = name, version
    data["drift"] = {**data.get("drift", {}), **drift}
    return yaml.safe_dump(data, sort_keys=False)


def changed(text: str, *, active: bool = True) -> Outgoing:
    data = yaml.safe_load(text)
    event = registry_events.UseCaseChanged(
        use_case=data["name"],
        version=data["version"],
        state=registry_events.USE_CASE_STATE_ACTIVE if active else registry_events.USE_CASE_STATE_RETIRED,
        spec_yaml=text,
        spec_sha256=hashlib.sha256(text.encode()).hexdigest(),
    )
    return Outgoing("", event, use_case=data["name"], key=data["name"])


async def publish(bootstrap: str, topic: str, *items: Outgoing) -> None:
    async with EventPublisher(bootstrap, producer="registry-test") as pub:
        await pub.publish_many([Outgoing(topic, i.event, i.use_case, i.key) for i in items])


async def cleanup_policy(bootstrap: str, topic: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (reply,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, None)])
        entries = {str(e[0]): str(e[1]) for resource in reply.resources for e in resource[4]}
        return entries["cleanup.policy"]
    finally:
        await admin.close()


async def test_replay_then_live_changes(kafka: infra.KafkaHandle) -> None:
    bootstrap = kafka.bootstrap_servers
    topic = f"test.usecases.{uuid.uuid4().hex[:10]}"
    a, b = f"fa_{uuid.uuid4().hex[:6]}", f"fb_{uuid.uuid4().hex[:6]}"
    assert await ensure_catalogue_topic(bootstrap, topic) == CREATED
    assert await ensure_catalogue_topic(bootstrap, topic) == PRESENT
    assert await cleanup_policy(bootstrap, topic) == "compact"

    # History: a v1, b v1, a v2, and one entry this service cannot read.
    await publish(
        bootstrap,
        topic,
        changed(renamed(LOAN, a)),
        changed(renamed(SEGMENTS, b)),
        changed(renamed(LOAN, a, 2, psi_threshold=0.3)),
        changed(renamed(LOAN, "broken_one").replace("task: binary", "task: nonsense")),
    )
    settings = _Settings(kafka_bootstrap=bootstrap, usecases_topic=topic, usecases_load_timeout_s=30)
    catalogue = await load_catalogue(settings)
    follower = catalogue.follower
    assert follower is not None

    # Replayed to the end at start: the latest of each key, nothing else; no listener ran.
    assert set(catalogue.usecases) >= {a, b} and "broken_one" not in catalogue.usecases
    assert catalogue.usecases[a].version == 2 and catalogue.usecases[a].drift.psi_threshold == 0.3
    assert follower.skipped == 1

    seen: list[tuple[ChangeKind, str, int]] = []

    async def listener(change: Change) -> None:
        seen.append((change.kind, change.name, change.spec.version))

    catalogue.listen(listener)
    task = asyncio.create_task(follower.run())
    try:
        c = f"fc_{uuid.uuid4().hex[:6]}"
        await publish(
            bootstrap,
            topic,
            changed(renamed(LOAN, c)),
            changed(renamed(SEGMENTS, b), active=False),
            changed(renamed(LOAN, a, 3, psi_threshold=0.4)),
            changed(renamed(LOAN, a, 2, psi_threshold=0.9)),  # stale: ignored
        )
        assert await follower.sync(timeout_s=20)
        assert seen == [(ChangeKind.ADDED, c, 1), (ChangeKind.RETIRED, b, 1), (ChangeKind.UPDATED, a, 3)]
        assert c in catalogue.usecases and b not in catalogue.usecases
        assert catalogue.usecases[a].drift.psi_threshold == 0.4
        # Caught up: sync answers at once.
        assert await follower.sync(timeout_s=5)
    finally:
        await follower.stop()
        await asyncio.wait_for(task, 10)

    # A second service starting now learns the same set, from the beginning.
    again = await load_catalogue(settings)
    try:
        assert {n: uc.version for n, uc in again.usecases.items()} == {
            n: uc.version for n, uc in catalogue.usecases.items()
        }
        assert b in again.retired
    finally:
        await again.follower._consumer.stop()  # type: ignore[union-attr]  # noqa: SLF001


async def test_an_auto_created_topic_is_made_compacted(kafka: infra.KafkaHandle) -> None:
    bootstrap = kafka.bootstrap_servers
    topic = f"test.usecases.{uuid.uuid4().hex[:10]}"
    # An early writer auto-creates it with the broker's defaults (delete policy).
    await publish(bootstrap, topic, changed(LOAN))
    assert await cleanup_policy(bootstrap, topic) == "delete"
    assert await ensure_catalogue_topic(bootstrap, topic) == PRESENT
    assert await cleanup_policy(bootstrap, topic) == "compact"
