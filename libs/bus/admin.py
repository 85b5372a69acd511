"""Topics that must exist with their own settings before anyone writes to them.

The brokers the factory runs on create a topic on first use (``auto.create.topics.enable``)
with the broker's defaults: a delete policy and a retention of hours. That is right for
events and wrong for the use-case catalogue, which must keep each use case's latest
entry for ever (``cleanup.policy=compact``). :func:`ensure_topic` creates a topic with
its settings when missing and puts them back on a topic that was auto-created without
them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from libs.bus import topics
from libs.bus.security import KafkaSecurity

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36
CREATED, PRESENT, UNKNOWN = "created", "present", "unknown"


async def ensure_topic(
    bootstrap: str,
    name: str,
    *,
    partitions: int = 1,
    configs: Mapping[str, str] | None = None,
    security: KafkaSecurity | None = None,
    replication: int = 1,
    timeout_s: float = 15.0,
    align: bool = True,
) -> str:
    """Create ``name`` with ``configs`` when missing; on an existing topic whose configs
    differ, set them (a topic auto-created by an early writer). Returns ``"created"``,
    ``"present"``, or ``"unknown"`` when it could not tell: that (no permission, broker
    down) is logged, not raised; the caller goes on and the topic's owner creates it.
    ``align=False`` leaves an existing topic alone (a reader: it may not see configs)."""
    wanted = dict(configs or {})
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000), **_kwargs(security)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        if name not in await admin.list_topics():
            reply = await admin.create_topics([NewTopic(name, partitions, replication, topic_configs=wanted)])
            errors = [(t[0], t[1]) for t in reply.topic_errors if t[1] not in (0, TOPIC_ALREADY_EXISTS)]
            if errors:
                log.warning("could not create topic %s: %s", name, errors)
                return UNKNOWN
            log.info("created topic %s (%d partitions%s)", name, partitions, _shown(wanted))
            return CREATED
        if wanted and align:
            await _align_configs(admin, name, wanted)
        return PRESENT
    except Exception as exc:  # noqa: BLE001 - the owner (infra, the registry) creates it
        log.warning("could not check topic %s: %r", name, exc)
        return UNKNOWN
    finally:
        await admin.close()


async def ensure_catalogue_topic(
    bootstrap: str, name: str = topics.USECASES, *, security: KafkaSecurity | None = None, align: bool = True
) -> str:
    """The use-case catalogue's topic (whatever its name): one partition, compacted."""
    return await ensure_topic(
        bootstrap,
        name,
        partitions=topics.PARTITIONS[topics.USECASES],
        configs=topics.CONFIGS[topics.USECASES],
        security=security,
        align=align,
    )


async def _align_configs(admin: AIOKafkaAdminClient, name: str, wanted: Mapping[str, str]) -> None:
    replies = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name, None)])
    current: dict[str, str] = {}
    for reply in replies:
        for resource in reply.resources:
            # (error_code, error_message, resource_type, resource_name, config_entries)
            for entry in resource[4]:
                current[str(entry[0])] = str(entry[1])
    differ = {k: v for k, v in wanted.items() if current.get(k) != v}
    if not differ:
        return
    # AlterConfigs replaces the topic's overrides as a whole; an auto-created topic has
    # none but these to lose.
    log.warning("topic %s lacks %s; setting them", name, _shown(differ).lstrip(", "))
    await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, {**wanted})])


def _kwargs(security: KafkaSecurity | None) -> dict[str, Any]:
    return security.client_kwargs() if security is not None else {}


def _shown(configs: Mapping[str, str]) -> str:
    return "".join(f", {k}={v}" for k, v in configs.items())


__all__ = ["ensure_catalogue_topic", "ensure_topic"]
