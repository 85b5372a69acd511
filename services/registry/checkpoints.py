"""Signed checkpoints of the audit chain, kept outside the registry's database.

The hash chain alone is unkeyed and its head lives in the same database, so whoever can
write that database (its superuser, or an owner that disables the triggers) can rewrite
history and recompute every hash. A checkpoint anchors the chain outside it: the
registry signs ``(sequence, head hash, time, the hash of every entry since the previous
checkpoint)`` with an Ed25519 key that only the registry process holds (a file; never
written into the database) and appends it to a Kafka topic (``aif.audit.checkpoints``:
delete policy, infinite retention; a producer can only append). ``aif audit verify``
checks each checkpoint's signature with the public key and every covered entry's hash,
so a rewritten or truncated history below the newest checkpoint fails verification,
naming the first entry that differs.

The publisher never signs a history that does not extend the last checkpoint: it checks
that the new entries chain from the last signed head first, and logs an error instead.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from libs.bus import KafkaSecurity, topics
from libs.bus.admin import ensure_topic
from libs.bus.readback import records_to_end
from libs.errors import ConfigError
from services.registry.audit import GENESIS, canonical_json, verify_chain
from services.registry.domain import AuditRecord, ChainReport
from services.registry.store import RegistryStore

log = logging.getLogger(__name__)

TOPIC = topics.AUDIT_CHECKPOINTS
# Whoever creates the topic (this registry, or the secure broker's admin) creates it so.
TOPIC_CONFIGS = topics.CONFIGS[TOPIC]
PUBLIC_SUFFIX = ".pub"
# Entries one checkpoint covers at most (64 hex characters each: ~70 KB of JSON).
MAX_ENTRIES = 1000


@dataclass(frozen=True)
class Checkpoint:
    """The chain's head at ``sequence``, and the hash of each entry after ``after``."""

    sequence: int
    head_hash: str
    time_us: int
    after: int
    hashes: tuple[str, ...] = ()  # entries after+1 .. sequence, in order
    signature: str = ""

    def signed_bytes(self) -> bytes:
        body = {
            "sequence": self.sequence,
            "head_hash": self.head_hash,
            "time_us": self.time_us,
            "after": self.after,
            "hashes": list(self.hashes),
        }
        return canonical_json(body).encode()

    def to_json(self) -> bytes:
        return canonical_json({**json_body(self), "signature": self.signature}).encode()

    @staticmethod
    def from_json(raw: bytes) -> Checkpoint:
        import json

        data = json.loads(raw)
        return Checkpoint(
            int(data["sequence"]),
            str(data["head_hash"]),
            int(data["time_us"]),
            int(data["after"]),
            tuple(str(h) for h in data["hashes"]),
            str(data["signature"]),
        )


def json_body(cp: Checkpoint) -> dict[str, Any]:
    return {
        "sequence": cp.sequence,
        "head_hash": cp.head_hash,
        "time_us": cp.time_us,
        "after": cp.after,
        "hashes": list(cp.hashes),
    }


# ---------------------------------------------------------------- keys


def ensure_signing_key(path: Path) -> Ed25519PrivateKey:
    """The private key at ``path``, created (0600, public key beside it) when missing."""
    if path.is_file():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"audit checkpoint key {path} is not an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_path(path).write_bytes(public_pem(key.public_key()))
    return key


def public_path(private: Path) -> Path:
    return private.with_name(private.name + PUBLIC_SUFFIX)


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the audit checkpoint public key {path}: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path} is not an Ed25519 public key")
    return key


def sign(key: Ed25519PrivateKey, cp: Checkpoint) -> Checkpoint:
    signature = base64.b64encode(key.sign(cp.signed_bytes())).decode()
    return Checkpoint(cp.sequence, cp.head_hash, cp.time_us, cp.after, cp.hashes, signature)


def signature_ok(key: Ed25519PublicKey, cp: Checkpoint) -> bool:
    try:
        key.verify(base64.b64decode(cp.signature), cp.signed_bytes())
    except (InvalidSignature, ValueError):
        return False
    return True


# ---------------------------------------------------------------- verification


def verify_checkpoints(
    records: Iterable[AuditRecord], checkpoints: Sequence[Checkpoint], key: Ed25519PublicKey
) -> ChainReport:
    """Check the stored chain against signed checkpoints: every covered entry must hash to
    what was signed, and the chain must reach the newest checkpoint. Reports the first
    entry that differs or is missing (a rewrite or a truncation below a checkpoint)."""
    signed: dict[int, str] = {}
    for cp in checkpoints:
        if not signature_ok(key, cp):
            return ChainReport(
                False, 0, GENESIS, cp.sequence, "", f"checkpoint at entry {cp.sequence} has a bad signature"
            )
        for offset, digest in enumerate(cp.hashes):
            signed[cp.after + 1 + offset] = digest
        signed[cp.sequence] = cp.head_hash
    newest = max((cp.sequence for cp in checkpoints), default=0)
    checked, last_seq, last_hash = 0, 0, GENESIS
    for rec in records:
        want = signed.get(rec.sequence)
        if rec.sequence != last_seq + 1:
            return _report(checked, last_hash, last_seq + 1, "", "entry missing below a signed checkpoint")
        if want is not None and want != rec.hash:
            return _report(
                checked,
                last_hash,
                rec.sequence,
                rec.event_id,
                f"hash {rec.hash[:16]}… differs from the signed checkpoint's {want[:16]}… (history rewritten)",
            )
        checked, last_seq, last_hash = checked + 1, rec.sequence, rec.hash
    if last_seq < newest:
        return _report(
            checked,
            last_hash,
            last_seq + 1,
            "",
            f"the log ends at entry {last_seq} but a signed checkpoint covers {newest} (history truncated)",
        )
    return ChainReport(True, checked, last_hash, message=f"{len(checkpoints)} signed checkpoints hold")


def _report(checked: int, head: str, seq: int, event_id: str, problem: str) -> ChainReport:
    what = f"entry {seq}" + (f" (event id {event_id})" if event_id else "")
    return ChainReport(False, checked, head, seq, event_id, f"{what}: {problem}")


# ---------------------------------------------------------------- the topic


@dataclass
class CheckpointLog:
    """The checkpoint topic: append and read all (one partition, in order)."""

    bootstrap: str
    topic: str = TOPIC
    security: KafkaSecurity | None = None
    _producer: AIOKafkaProducer | None = field(default=None, init=False)

    def _kwargs(self) -> dict[str, Any]:
        return self.security.client_kwargs() if self.security else {}

    async def start(self) -> None:
        await ensure_topic(self.bootstrap, self.topic, configs=TOPIC_CONFIGS, security=self.security)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, **self._kwargs()
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def append(self, cp: Checkpoint) -> None:
        assert self._producer is not None, "start() first"
        await self._producer.send_and_wait(self.topic, cp.to_json(), key=str(cp.sequence).encode())

    async def read_all(self, timeout: float = 15.0) -> list[Checkpoint]:
        """Every checkpoint on the topic, oldest first (none when the topic is missing)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, **self._kwargs()
        )
        await consumer.start()
        out: list[Checkpoint] = []
        try:
            if self.topic not in await consumer.topics():
                return out
            tps = [TopicPartition(self.topic, 0)]  # created with one partition: one order
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            async with asyncio.timeout(timeout):
                async for record in records_to_end(consumer, tps, poll_ms=1000):
                    if record.value is not None:
                        out.append(Checkpoint.from_json(record.value))
        finally:
            await consumer.stop()
        return sorted(out, key=lambda cp: cp.sequence)


# ---------------------------------------------------------------- the publisher


class CheckpointPublisher:
    """Signs and appends a checkpoint whenever the audit head has moved (every ``interval``)."""

    def __init__(
        self,
        store: RegistryStore,
        key: Ed25519PrivateKey,
        sink: CheckpointLog,
        *,
        interval: float = 5.0,
        clock_us: Any = None,
    ) -> None:
        import time

        self._store, self._key, self._sink, self._interval = store, key, sink, interval
        self._clock_us = clock_us or (lambda: time.time_ns() // 1000)
        self._last: tuple[int, str] | None = None
        self._refused = ""
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        await self._sink.start()
        signed = await self._sink.read_all()
        self._last = (signed[-1].sequence, signed[-1].head_hash) if signed else (0, GENESIS)

    async def publish_once(self) -> Checkpoint | None:
        """Checkpoints of what was appended since the last one, at most MAX_ENTRIES entries
        each (a Kafka message stays small); the newest, or None when nothing was new."""
        assert self._last is not None, "start() first"
        head = await asyncio.to_thread(self._store.audit_head)
        newest: Checkpoint | None = None
        while True:
            after, after_hash = self._last
            if head is None or head[0] <= after:
                if (head[0] if head else 0) < after:
                    self._refuse(
                        f"the audit head {head} is below the last signed checkpoint {after}: truncated"
                    )
                return newest
            upto = min(head[0], after + MAX_ENTRIES)
            new = await asyncio.to_thread(self._entries_after, after, upto)
            prev = after_hash
            for rec in new:
                if rec.prev_hash != prev:
                    self._refuse(f"audit entry {rec.sequence} does not chain from the last signed checkpoint")
                    return newest
                prev = rec.hash
            if not new or new[-1].sequence != upto or (upto == head[0] and new[-1].hash != head[1]):
                self._refuse(f"the audit head {head} does not match its entries")
                return newest
            newest = sign(
                self._key,
                Checkpoint(upto, new[-1].hash, self._clock_us(), after, tuple(r.hash for r in new)),
            )
            await self._sink.append(newest)
            self._last = (newest.sequence, newest.head_hash)

    def _refuse(self, problem: str) -> None:
        """Say once (not every round) that the history no longer extends what was signed."""
        if problem != self._refused:
            log.error("not signing an audit checkpoint: %s (run `aif audit verify`)", problem)
            self._refused = problem

    def _entries_after(self, after: int, upto: int) -> list[AuditRecord]:
        with self._store.read() as tx:
            return [
                r for r in tx.list_audit("", after_sequence=after, limit=upto - after) if r.sequence <= upto
            ]

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.publish_once()
            except Exception:  # noqa: BLE001 - the broker may be away: try again next round
                log.exception("could not publish an audit checkpoint")
            try:
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            except TimeoutError:
                pass

    async def stop(self) -> None:
        self._stopping.set()
        try:
            await self.publish_once()  # the last entries before going down
        except Exception:  # noqa: BLE001
            log.exception("could not publish the last audit checkpoint")
        await self._sink.stop()


async def anchor_report(
    records: Iterable[AuditRecord], log: CheckpointLog, key: Ed25519PublicKey
) -> tuple[ChainReport, str]:
    """The chain checked against every checkpoint on ``log``, and a line saying what
    anchored it (or that nothing did yet)."""
    checkpoints = await log.read_all()
    anchored = verify_checkpoints(records, checkpoints, key)
    if not checkpoints:
        return anchored, f"NOT anchored: no signed checkpoint on {log.topic}"
    newest = checkpoints[-1].sequence
    later = f"; entries after {newest} are not signed yet" if anchored.checked > newest else ""
    return anchored, f"{len(checkpoints)} signed checkpoints on {log.topic}, up to entry {newest}{later}"


async def verify_signed(store: RegistryStore, log: CheckpointLog, key: Ed25519PublicKey) -> ChainReport:
    """The stored chain, read once: verified, then checked against the checkpoints on
    ``log`` (a chain consistent with itself may still be a superuser's rewrite: he can
    recompute every hash, not the signatures). A valid report's message says what anchored
    it; an invalid one names the first entry that differs."""
    records, head = await asyncio.to_thread(lambda: (list(store.audit_chain()), store.audit_head()))
    report = verify_chain(records, head)
    if not report.valid:
        return report
    anchored, line = await anchor_report(records, log, key)
    return anchored if not anchored.valid else dataclasses.replace(report, message=line)


def verify_anchored(store: RegistryStore, settings: Any = None) -> tuple[ChainReport, str]:
    """The stored chain verified, then checked against the signed checkpoints the registry's
    settings point at (public key ``audit_checkpoint_key`` + ``.pub``, the topic, the broker;
    ``AIF_REGISTRY_*``); and a line saying what anchored it. Without a public key only the
    chain itself is checked, and the line says so."""
    from libs.settings import load_settings
    from services.registry.settings import RegistrySettings

    records = list(store.audit_chain())  # read once: verified, then checked against the signatures
    report = verify_chain(records, store.audit_head())
    if not report.valid:
        return report, ""
    settings = settings or load_settings(RegistrySettings)
    key_path = public_path(settings.audit_checkpoint_key)
    if not key_path.is_file():
        return report, f"NOT anchored: no checkpoint public key at {key_path}"
    sink = CheckpointLog(
        settings.kafka_bootstrap, settings.audit_checkpoint_topic, KafkaSecurity.from_settings(settings)
    )
    return asyncio.run(anchor_report(records, sink, load_public_key(key_path)))
