"""Attacks on the audit log by whoever can write the registry's database, on real PostgreSQL.

The registry runs as a runtime role that may only INSERT and SELECT the log (the tables
belong to the migration owner): it cannot TRUNCATE, UPDATE or DELETE entries, wind the
head back, or drop the triggers. The database superuser can do all of that, and can
recompute every hash of the unkeyed chain, so the chain alone says "OK"; the signed
checkpoints on the Kafka topic (a key the database never sees) catch the rewrite and
name the first entry that differs.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aif import infra
from aif.infra.postgres import SUPERUSER, dsn
from aifactory.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from services.registry import checkpoints
from services.registry.audit import GENESIS, entry_hash, verify_chain
from services.registry.checkpoints import (
    Checkpoint,
    CheckpointLog,
    CheckpointPublisher,
    ensure_signing_key,
    public_path,
    sign,
    verify_anchored,
)
from services.registry.domain import Actor, AuditDraft, AuditRecord
from services.registry.settings import RegistrySettings
from services.registry.store import SqlStore, open_store
from services.registry.store.roles import migrate_as_owner
from tests.security.conftest import attack
from tests.unit.registry import test_core
from tests.unit.registry.kit import Kit, open_kit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
ENTRIES = 5


@pytest.fixture(scope="module")
def postgres() -> Iterator[infra.PostgresHandle]:
    handle = infra.ensure_postgres()
    yield handle
    handle.stop()


@dataclass
class Db:
    schema: str
    owner_url: str
    runtime_url: str
    superuser_dsn: str
    runtime_dsn: str
    owner_dsn: str

    def superuser(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.superuser_dsn, autocommit=True)
        conn.execute(f'SET search_path TO "{self.schema}"')
        return conn


@pytest.fixture
def db(postgres: infra.PostgresHandle) -> Iterator[Db]:
    """A schema owned by a fresh owner role, migrated by it, and a fresh runtime role."""
    tag = uuid.uuid4().hex[:10]
    schema, owner, runtime = f"audit_{tag}", f"aif_owner_{tag}", f"aif_runtime_{tag}"
    config = postgres.component.config
    superuser = dsn(config, user=SUPERUSER, password=None)
    with psycopg.connect(superuser, autocommit=True) as conn:
        for role in (owner, runtime):
            conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{tag}'")
        conn.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{owner}"')

    def url(role: str) -> str:
        base = dsn(config, user=role, password=tag).replace("postgresql://", "postgresql+psycopg://", 1)
        return f"{base}?options=-csearch_path%3D{schema}"

    def raw(role: str) -> str:
        return dsn(config, user=role, password=tag) + f"?options=-csearch_path%3D{schema}"

    migrate_as_owner(url(owner), url(runtime))
    yield Db(schema, url(owner), url(runtime), superuser, raw(runtime), raw(owner))
    with psycopg.connect(superuser, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        for role in (runtime, owner):
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def append(store: SqlStore, n: int, start: int = 0) -> None:
    """``n`` audit entries written as the registry writes them (one transaction each)."""
    for i in range(start, start + n):
        with store.write() as tx:
            tx.append_audit(
                AuditDraft(
                    "model_version.registered",
                    Actor("eve", ("ml-engineer",)),
                    use_case="loan_auto",
                    model_name="loan_auto",
                    version=i + 1,
                    reason=f"registered as a candidate #{i + 1}",
                ),
                1_700_000_000_000_000 + i,
            )


# ---------------------------------------------------------------- the runtime role


ATTEMPTS = {
    "truncate the log": "TRUNCATE audit_events",
    "truncate the head": "TRUNCATE audit_head",
    "rewrite an entry": "UPDATE audit_events SET reason = 'nothing happened' WHERE sequence = 2",
    "delete an entry": "DELETE FROM audit_events WHERE sequence = 2",
    "wind the head back": "UPDATE audit_head SET sequence = 1",
    "disable the triggers": "ALTER TABLE audit_events DISABLE TRIGGER ALL",
    "drop the append-only trigger": "DROP TRIGGER audit_events_append_only ON audit_events",
}


def test_the_runtime_role_cannot_truncate_rewrite_or_delete_the_log(db: Db) -> None:
    store = open_store(db.runtime_url, migrate=False)
    try:
        append(store, ENTRIES)  # what the registry needs still works
    finally:
        store.close()
    for what, statement in ATTEMPTS.items():
        with psycopg.connect(db.runtime_dsn, autocommit=True) as conn:
            try:
                conn.execute(statement)
                done = True
            except psycopg.Error:
                done = False
        attack(succeeded=done)
        assert not done, f"the runtime role could {what}"
    with psycopg.connect(db.runtime_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM audit_events").fetchone() == (ENTRIES,)


def test_even_the_owner_cannot_truncate_without_first_dropping_the_guard(db: Db) -> None:
    store = open_store(db.runtime_url, migrate=False)
    try:
        append(store, 2)
    finally:
        store.close()
    with psycopg.connect(db.owner_dsn, autocommit=True) as conn:
        try:
            conn.execute("TRUNCATE audit_events")
            done = True
        except psycopg.errors.RaiseException as exc:
            done = False
            assert "TRUNCATE refused" in str(exc)
    attack(succeeded=done)
    assert not done


# ---------------------------------------------------------------- the superuser, and the checkpoints


@pytest.fixture
async def anchored(
    db: Db, kafka: infra.KafkaHandle, new_topic: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """A log of ENTRIES entries signed into checkpoints on a fresh topic: one entry, then the
    rest at once in checkpoints of at most two entries (as a long backlog is signed)."""
    monkeypatch.setattr(checkpoints, "MAX_ENTRIES", 2)
    topic = await new_topic("audit-checkpoints")
    key_path = tmp_path / "checkpoint.key"
    key = ensure_signing_key(key_path)
    store = open_store(db.runtime_url, migrate=False)
    sink = CheckpointLog(kafka.bootstrap_servers, topic)
    publisher = CheckpointPublisher(store, key, sink)
    await publisher.start()
    try:
        append(store, 1)
        assert (await publisher.publish_once()) is not None
        append(store, ENTRIES - 1, start=1)
        newest = await publisher.publish_once()
        assert newest is not None and newest.sequence == ENTRIES
        assert await publisher.publish_once() is None  # nothing new
    finally:
        await publisher.stop()
        store.close()
    signed = await sink.read_all()
    assert [(cp.after, cp.sequence) for cp in signed] == [(0, 1), (1, 3), (3, 5)]
    settings = RegistrySettings(
        kafka_bootstrap=kafka.bootstrap_servers, audit_checkpoint_topic=topic, audit_checkpoint_key=key_path
    )
    return {"settings": settings, "topic": topic, "key": key_path, "kafka": kafka.bootstrap_servers}


def _rows(conn: psycopg.Connection[Any]) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    cur = conn.execute(
        "SELECT sequence, event_id, time_us, action, actor_subject, actor_roles, use_case, model_name,"
        " version, alias, reason, evidence_ids, details, prev_hash, hash FROM audit_events ORDER BY sequence"
    )
    for r in cur.fetchall():
        records.append(
            AuditRecord(
                event_id=r[1],
                sequence=r[0],
                time_us=r[2],
                action=r[3],
                actor=Actor(r[4], tuple(r[5])),
                use_case=r[6],
                model_name=r[7],
                version=r[8],
                alias=r[9],
                reason=r[10],
                evidence_ids=tuple(r[11]),
                details=r[12],
                prev_hash=r[13],
                hash=r[14],
            )
        )
    return records


def _rewrite(conn: psycopg.Connection[Any], records: list[AuditRecord]) -> None:
    """Write ``records`` back as a consistent chain (every hash recomputed) with its head."""
    prev = GENESIS
    for rec in records:
        rec = replace(rec, prev_hash=prev)
        digest = entry_hash(prev, rec)
        conn.execute(
            "UPDATE audit_events SET reason = %s, prev_hash = %s, hash = %s WHERE sequence = %s",
            [rec.reason, prev, digest, rec.sequence],
        )
        prev = digest
    conn.execute("UPDATE audit_head SET sequence = %s, hash = %s WHERE id = 1", [records[-1].sequence, prev])


def _verify(db: Db, settings: RegistrySettings) -> Any:
    store = open_store(db.runtime_url, migrate=False)
    try:
        chain_only = verify_chain(store.audit_chain(), store.audit_head())
        report, _ = verify_anchored(store, settings)
    finally:
        store.close()
    return chain_only, report


async def test_a_superuser_rewrite_with_every_hash_recomputed_is_detected(
    db: Db, anchored: dict[str, Any]
) -> None:
    with db.superuser() as conn:
        conn.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
        conn.execute("ALTER TABLE audit_head DISABLE TRIGGER USER")
        records = _rows(conn)
        records[1] = replace(records[1], reason="approved by the board")  # entry 2
        _rewrite(conn, records)
        conn.execute("ALTER TABLE audit_events ENABLE TRIGGER USER")
        conn.execute("ALTER TABLE audit_head ENABLE TRIGGER USER")
    chain_only, report = await asyncio.to_thread(_verify, db, anchored["settings"])
    assert chain_only.valid  # the unkeyed chain alone cannot tell
    attack(succeeded=report.valid)
    assert not report.valid
    assert report.first_invalid_sequence == 2, report.message
    assert "rewritten" in report.message

    # The registry refuses to sign a history that no longer extends its last checkpoint.
    store = open_store(db.runtime_url, migrate=False)
    publisher = CheckpointPublisher(
        store, ensure_signing_key(anchored["key"]), CheckpointLog(anchored["kafka"], anchored["topic"])
    )
    await publisher.start()
    try:
        append(store, 1, start=ENTRIES)
        signed = await publisher.publish_once()
    finally:
        await publisher.stop()
        store.close()
    attack(succeeded=signed is not None)
    assert signed is None

    # And `aif audit verify` says so, naming the entry, with exit status 1.
    result = subprocess.run(
        [sys.executable, "-m", "aif.cli", "audit", "verify", "--database-url", db.runtime_url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={
            **os.environ,
            "AIF_REGISTRY_KAFKA_BOOTSTRAP": anchored["kafka"],
            "AIF_REGISTRY_AUDIT_CHECKPOINT_TOPIC": anchored["topic"],
            "AIF_REGISTRY_AUDIT_CHECKPOINT_KEY": str(anchored["key"]),
        },
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN at sequence 2" in result.stdout, result.stdout


async def test_a_checkpoint_forged_without_the_key_does_not_cover_a_rewrite(
    db: Db, anchored: dict[str, Any], tmp_path: Path
) -> None:
    with db.superuser() as conn:
        conn.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
        conn.execute("ALTER TABLE audit_head DISABLE TRIGGER USER")
        records = _rows(conn)
        records[3] = replace(records[3], reason="nobody approved this")  # entry 4
        _rewrite(conn, records)
        rewritten = _rows(conn)
    # The attacker may write to the topic, but signs with a key of their own.
    forged = sign(
        Ed25519PrivateKey.generate(),
        Checkpoint(ENTRIES, rewritten[-1].hash, 0, 0, tuple(r.hash for r in rewritten)),
    )
    sink = CheckpointLog(anchored["kafka"], anchored["topic"])
    await sink.start()
    try:
        await sink.append(forged)
    finally:
        await sink.stop()
    _, report = await asyncio.to_thread(_verify, db, anchored["settings"])
    attack(succeeded=report.valid)
    assert not report.valid
    assert "bad signature" in report.message


async def test_a_superuser_truncate_and_consistent_rebuild_is_detected(
    db: Db, anchored: dict[str, Any]
) -> None:
    with db.superuser() as conn:
        kept = _rows(conn)[:2]
        conn.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
        conn.execute("ALTER TABLE audit_head DISABLE TRIGGER USER")
        conn.execute("TRUNCATE audit_events")
        # Rebuilt: the first two entries as they were, the rest gone; a consistent head.
        for rec in kept:
            conn.execute(
                "INSERT INTO audit_events (sequence, event_id, time_us, action, actor_subject, actor_roles,"
                " use_case, model_name, version, alias, reason, evidence_ids, details, prev_hash, hash)"
                " VALUES (%s, %s, %s, %s, %s, %s::json, %s, %s, %s, %s, %s, %s::json, %s::json, %s, %s)",
                [
                    rec.sequence,
                    rec.event_id,
                    rec.time_us,
                    rec.action,
                    rec.actor.subject,
                    psycopg.types.json.Json(list(rec.actor.roles)),
                    rec.use_case,
                    rec.model_name,
                    rec.version,
                    rec.alias,
                    rec.reason,
                    psycopg.types.json.Json(list(rec.evidence_ids)),
                    psycopg.types.json.Json(rec.details),
                    rec.prev_hash,
                    rec.hash,
                ],
            )
        conn.execute("UPDATE audit_head SET sequence = %s, hash = %s WHERE id = 1", [2, kept[-1].hash])
        conn.execute("ALTER TABLE audit_events ENABLE TRIGGER USER")
        conn.execute("ALTER TABLE audit_head ENABLE TRIGGER USER")
    chain_only, report = await asyncio.to_thread(_verify, db, anchored["settings"])
    assert chain_only.valid and chain_only.checked == 2  # consistent, two entries
    attack(succeeded=report.valid)
    assert not report.valid
    assert report.first_invalid_sequence == 3, report.message
    assert "truncated" in report.message


def test_verify_without_the_public_key_says_it_is_not_anchored(db: Db, tmp_path: Path) -> None:
    store = open_store(db.runtime_url, migrate=False)
    try:
        append(store, 1)
        report, line = verify_anchored(store, RegistrySettings(audit_checkpoint_key=tmp_path / "missing.key"))
    finally:
        store.close()
    assert report.valid and "NOT anchored" in line
    assert not public_path(tmp_path / "missing.key").exists()


# ---------------------------------------------------------------- the runtime role serves


@pytest.fixture
def kit(db: Db, tmp_path: Path) -> Iterator[Kit]:
    """The registry's core on the runtime role's grants (the schema migrated by the owner)."""
    with open_kit(db.runtime_url, tmp_path) as kit:
        yield kit


# The registry's own suite, on the runtime role: what it grants is what serving needs.
globals().update(
    {
        name: getattr(test_core, name)
        for name in (
            "test_register_numbers_versions_and_is_idempotent_writing_no_folder",
            "test_approval_policy_waits_and_only_an_approver_decides",
            "test_rollback_restores_the_previous_champion",
            "test_runs_metrics_and_lineage_down_to_a_prediction",
        )
    }
)


# ---------------------------------------------------------------- the service, wired so


async def test_the_service_migrates_as_owner_serves_as_runtime_and_signs_checkpoints(
    db: Db, kafka: infra.KafkaHandle, new_topic: Any, tmp_path: Path
) -> None:
    from libs.telemetry import setup_telemetry
    from libs.usecase import load_default
    from services.registry.app import build
    from tests.unit.registry.helpers import write_usecases

    topic = await new_topic("audit-checkpoints")
    settings = RegistrySettings(
        grpc_port=0,
        metrics_port=0,
        kafka_bootstrap=kafka.bootstrap_servers,
        auth_mode="off",
        database_url=db.runtime_url,
        database_owner_url=db.owner_url,
        artifact_root=tmp_path / "artifacts",
        export_root=tmp_path / "exports",
        consume=False,
        usecases_topic=await new_topic("audit-usecases"),
        promoted_topic=await new_topic("audit-promoted"),
        audit_checkpoint_key=tmp_path / "checkpoint.key",
        audit_checkpoint_topic=topic,
        audit_checkpoint_seconds=0.2,
    )
    svc = await build(
        settings,
        setup_telemetry("attack-audit"),
        usecases=load_default(write_usecases(tmp_path / "usecases")),
    )
    try:
        # The registry writes its audit log as the runtime role (the catalogue's own entries
        # go the same way): append as it does, and wait for the checkpoint.
        store = open_store(db.runtime_url, migrate=False)
        try:
            await asyncio.to_thread(append, store, 3)
        finally:
            store.close()
        sink = CheckpointLog(kafka.bootstrap_servers, topic)
        async with asyncio.timeout(30):
            while not (signed := await sink.read_all()) or signed[-1].sequence < 3:
                await asyncio.sleep(0.2)
        # VerifyAuditChain (what `aif audit verify` calls) checks the signed checkpoints too:
        # a superuser's rewrite with every hash recomputed is reported by the service itself.
        port = await svc.server.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
            before = await stub.VerifyAuditChain(registry_service_pb2.VerifyAuditChainRequest(), timeout=30)
            with db.superuser() as conn:
                conn.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
                conn.execute("ALTER TABLE audit_head DISABLE TRIGGER USER")
                records = _rows(conn)
                original = records[1]
                records[1] = replace(original, reason="approved by the board")
                _rewrite(conn, records)
                after = await stub.VerifyAuditChain(
                    registry_service_pb2.VerifyAuditChainRequest(), timeout=30
                )
                _rewrite(conn, [*records[:1], original, *records[2:]])  # as it was, for what follows
                conn.execute("ALTER TABLE audit_events ENABLE TRIGGER USER")
                conn.execute("ALTER TABLE audit_head ENABLE TRIGGER USER")
    finally:
        await svc.close()
    assert before.valid and "signed checkpoints" in before.message, before
    attack(succeeded=after.valid)
    assert not after.valid and after.first_invalid_sequence == 2 and "rewritten" in after.message, after
    report, line = await asyncio.to_thread(_verify_line, db, settings)

    assert report.valid, report.message
    assert "signed checkpoints" in line
    with psycopg.connect(db.superuser_dsn) as conn:
        owner = conn.execute(
            "SELECT tableowner FROM pg_tables WHERE schemaname = %s AND tablename = 'audit_events'",
            [db.schema],
        ).fetchone()
    assert owner is not None and owner[0].startswith("aif_owner_")


def _verify_line(db: Db, settings: RegistrySettings) -> Any:
    store = open_store(db.runtime_url, migrate=False)
    try:
        return verify_anchored(store, settings)
    finally:
        store.close()
