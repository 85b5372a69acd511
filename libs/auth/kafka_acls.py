"""Who may read and write which Kafka topic, in one table, and the ACLs it becomes.

Each service is its own Kafka principal (``User:<service>``); the business producers of a
use case are ``User:producer.<use_case>`` (:func:`producer`), one principal per use case, so
one team's producer cannot write another team's raw topic, nor any lifecycle topic;
``User:admin`` is the broker's only super user. A principal may write only the topics it
owns and read only the topics it consumes. Every
consuming service also writes the dead-letter topic (``libs.bus`` dead-letters what
it cannot handle). Consumer groups and transactional ids of a service start with
the service's name (:func:`group_prefix`: ingestion's group ``ingestion``, its
transactional ids ``ingestion-<instance>``); the feature store's faust app id is
``aif-featurestore``, and it owns that prefix for its group and its internal
changelog and repartition topics.

Raw topics are ``aif.<use_case>.raw``; a prefixed ACL cannot match a suffix, so the
services' ACLs on them are literal, one set per use case (:func:`bindings` takes the use
cases). A use case's producer gets a PREFIXED write on its raw topic's name: the topic
itself and nothing that does not start with it (no other use case's raw topic: the name
ends with ``.raw``, and no lifecycle topic).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum

from libs.bus import topics as t

ADMIN = "admin"
# Before per-use-case producers, every business producer was this one principal; its ACLs
# are still managed (so deleted) on a broker that has them.
LEGACY_PRODUCER = "producer"
PRODUCER_PREFIX = "producer."
RAW = "<raw topics of every use case>"  # stands for topics.raw(use_case) in the table
# Ingestion's own compacted topic of open quality windows (IngestionSettings.quality_state_topic),
# written in its transactions and read back at restart.
INGESTION_QUALITY_STATE = "aif.ingestion.quality-state"
# Configs of the topics above that admin creates otherwise than the broker's defaults.
TOPIC_CONFIGS = {INGESTION_QUALITY_STATE: {"cleanup.policy": "compact"}}


def producer(use_case: str) -> str:
    """The Kafka principal (SCRAM user) of ``use_case``'s business producers."""
    return PRODUCER_PREFIX + use_case


def is_producer(principal: str) -> bool:
    return principal.startswith(PRODUCER_PREFIX)


def use_case_of(principal: str) -> str:
    """The use case of a producer principal (``producer.<use_case>``)."""
    return principal.removeprefix(PRODUCER_PREFIX)


@dataclass(frozen=True)
class TopicAccess:
    writes: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    # Topics and groups with this prefix are the principal's own (faust internals).
    owns_prefix: str = ""
    # Uses Kafka transactions (transactional ids start with its group prefix).
    transactional: bool = False


ACCESS: Mapping[str, TopicAccess] = {
    # Records, dead letters and raw offsets are committed in one transaction.
    "ingestion": TopicAccess(
        writes=(t.RECORDS, t.DEAD_LETTER, t.QUALITY, INGESTION_QUALITY_STATE),
        reads=(RAW, t.USECASES, INGESTION_QUALITY_STATE),
        transactional=True,
    ),
    "featurestore": TopicAccess(
        writes=(t.FEATURES_WRITTEN, t.DEAD_LETTER),
        reads=(t.RECORDS, t.FEEDBACK, t.USECASES),
        owns_prefix="aif-featurestore",
    ),
    # Training requests come from the trainer's own API and from its drift handling.
    "trainer": TopicAccess(
        writes=(t.MODEL_TRAINED, t.TRAINING_REQUESTED, t.DEAD_LETTER),
        reads=(t.TRAINING_REQUESTED, t.DRIFT_DETECTED, t.USECASES),
    ),
    "evaluator": TopicAccess(writes=(t.MODEL_EVALUATED, t.DEAD_LETTER), reads=(t.MODEL_TRAINED, t.USECASES)),
    # The monitor asks for rollbacks; the registry decides and moves the alias. The registry
    # owns the use-case catalogue (every service reads it, with no consumer group), and
    # indexes the gateway's predictions for lineage (GetLineage/GetPrediction by prediction
    # id; group ``registry.predictions``).
    "registry": TopicAccess(
        writes=(t.MODEL_PROMOTED, t.DEAD_LETTER, t.USECASES, t.AUDIT_CHECKPOINTS),
        reads=(t.MODEL_EVALUATED, t.DRIFT_DETECTED, t.ROLLBACK_REQUESTED, t.AUDIT_CHECKPOINTS, t.PREDICTIONS),
    ),
    # The gateway reads its own predictions back before it sends again a publish whose
    # outcome it does not know (services.gateway.predlog; no consumer group).
    "gateway": TopicAccess(
        writes=(t.PREDICTIONS, t.FEEDBACK, t.DEAD_LETTER), reads=(t.MODEL_PROMOTED, t.USECASES, t.PREDICTIONS)
    ),
    "monitor": TopicAccess(
        writes=(t.DRIFT_DETECTED, t.ROLLBACK_REQUESTED, t.DEAD_LETTER),
        reads=(t.PREDICTIONS, t.FEEDBACK, t.MODEL_PROMOTED, t.USECASES),
    ),
}

SERVICES = tuple(ACCESS)
# The SCRAM users made with the broker's storage; producers are added per use case.
PRINCIPALS = (ADMIN, *ACCESS)


def is_managed(principal: str) -> bool:
    """Whether ``principal`` ("User:<name>") has its ACLs kept equal to this table."""
    name = principal.removeprefix("User:")
    return name in ACCESS or name == LEGACY_PRODUCER or is_producer(name)


class ResourceType(IntEnum):
    """Kafka protocol codes (org.apache.kafka.common.resource.ResourceType)."""

    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5


class PatternType(IntEnum):
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    """Kafka protocol codes (org.apache.kafka.common.acl.AclOperation)."""

    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DESCRIBE = 8


ALLOW = 3  # AclPermissionType.ALLOW


@dataclass(frozen=True, order=True)
class AclBinding:
    principal: str  # "User:<name>"
    resource_type: ResourceType
    resource: str
    pattern: PatternType
    operation: Operation
    host: str = "*"


def group_prefix(service: str) -> str:
    """Every consumer group and transactional id of ``service`` starts with this."""
    return service


def topics_of(access: TopicAccess, use_cases: Iterable[str]) -> tuple[list[str], list[str]]:
    """(writes, reads) with RAW expanded to each use case's raw topic."""
    raw = [t.raw(uc) for uc in use_cases]

    def expand(names: tuple[str, ...]) -> list[str]:
        return [x for n in names for x in (raw if n == RAW else [n])]

    return expand(access.writes), expand(access.reads)


def all_topics(use_cases: Iterable[str]) -> list[str]:
    """Every topic the table names (what the secure profile creates up front)."""
    use_cases = list(use_cases)
    names: set[str] = set()
    for access in ACCESS.values():
        writes, reads = topics_of(access, use_cases)
        names.update(writes, reads)
    return sorted(names)


def bindings(use_cases: Iterable[str]) -> list[AclBinding]:
    """The ACLs of every principal but admin (a super user needs none)."""
    use_cases = list(use_cases)
    out: set[AclBinding] = set()
    for uc in use_cases:
        out.add(
            AclBinding(
                f"User:{producer(uc)}", ResourceType.TOPIC, t.raw(uc), PatternType.PREFIXED, Operation.WRITE
            )
        )
    for name, access in ACCESS.items():
        user = f"User:{name}"
        writes, reads = topics_of(access, use_cases)
        # WRITE implies DESCRIBE and, since Kafka 3.0, idempotent produce on the topic.
        out.update(
            AclBinding(user, ResourceType.TOPIC, topic, PatternType.LITERAL, Operation.WRITE)
            for topic in writes
        )
        out.update(
            AclBinding(user, ResourceType.TOPIC, topic, PatternType.LITERAL, Operation.READ)
            for topic in reads
        )
        if reads:
            out.add(
                AclBinding(user, ResourceType.GROUP, group_prefix(name), PatternType.PREFIXED, Operation.READ)
            )
        if access.transactional:
            out.add(
                AclBinding(
                    user,
                    ResourceType.TRANSACTIONAL_ID,
                    group_prefix(name),
                    PatternType.PREFIXED,
                    Operation.WRITE,
                )
            )
        if access.owns_prefix:
            for kind in (ResourceType.TOPIC, ResourceType.GROUP):
                out.add(AclBinding(user, kind, access.owns_prefix, PatternType.PREFIXED, Operation.ALL))
    return sorted(out)


# A business system that reports outcomes of past decisions straight to the feedback topic
# (a bank's label feed: the loop driver's history, whose decisions no gateway served, so
# RecordFeedback would refuse them). Not a principal of the table: made only where such a
# feed runs (aif.loop.factory), with its own ACLs, which the table's sync leaves alone.
OUTCOME_FEED = "outcome-feed"


def outcome_feed_bindings(principal: str = OUTCOME_FEED) -> list[AclBinding]:
    """WRITE on the feedback topic, nothing else (no read, no group, no raw topic)."""
    return [
        AclBinding(f"User:{principal}", ResourceType.TOPIC, t.FEEDBACK, PatternType.LITERAL, Operation.WRITE)
    ]


def may_write(principal: str, topic: str, use_cases: Iterable[str]) -> bool:
    """What the table says (tests compare the broker's answers with this)."""
    access = ACCESS.get(principal)
    if principal == ADMIN:
        return True
    if is_producer(principal):
        return use_case_of(principal) in list(use_cases) and topic.startswith(t.raw(use_case_of(principal)))
    if access is None:
        return False
    writes, _ = topics_of(access, use_cases)
    return topic in writes or bool(access.owns_prefix and topic.startswith(access.owns_prefix))


def may_read(principal: str, topic: str, use_cases: Iterable[str]) -> bool:
    access = ACCESS.get(principal)
    if principal == ADMIN:
        return True
    if access is None:  # producers read nothing
        return False
    _, reads = topics_of(access, use_cases)
    return topic in reads or bool(access.owns_prefix and topic.startswith(access.owns_prefix))
