"""The registry's store on a real database: schema, write serialisation, the audit log,
the outbox, and database errors as libs.errors.

Part of the shared suite (see kit.py): SQLite here, PostgreSQL in tests/integration.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from aifactory.registry.v1 import events_pb2 as registry_events
from libs.bus import Outgoing, topics
from libs.bus.outbox import OutboxRelay
from libs.errors import AlreadyExists, Unavailable
from services.registry.core import utcnow
from services.registry.domain import (
    CHAMPION,
    SYSTEM,
    AliasChange,
    AliasChangeKind,
    Metric,
    NewRun,
    PredictionEntry,
)
from services.registry.store import METADATA, open_store
from tests.unit.registry.helpers import AUTO
from tests.unit.registry.kit import ENGINEER, Kit, pending_events, register, verdict


def test_migrations_create_exactly_the_tables_the_store_uses(kit: Kit) -> None:
    with kit.store.db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), METADATA)
    assert diffs == []
    kit.store.migrate()  # at head already: a no-op


def test_concurrent_metric_logging_and_indexing_lose_nothing(kit: Kit) -> None:
    """Writers that read first (a run's status, then its metrics; prediction ids) used to
    begin as readers on SQLite and fail at once with "database is locked" when another
    writer committed before their write: the trainer lost epoch metrics under load."""
    runs = [kit.runs.create(NewRun(AUTO, AUTO, run_id=f"run-c{i}"), ENGINEER).run_id for i in range(3)]
    steps = 40
    errors: list[BaseException] = []

    def log(run_id: str) -> None:
        try:
            for step in range(steps):
                kit.runs.log_metrics(run_id, [Metric("loss", 1.0 / (step + 1), "train", step)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def index(worker: int) -> None:
        try:
            for i in range(steps):
                kit.registry.index_predictions(
                    [PredictionEntry(f"p-{worker}-{i}", AUTO, AUTO, 1, utcnow(), CHAMPION)]
                )
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=log, args=(r,)) for r in runs]
    threads += [threading.Thread(target=index, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    for run_id in runs:
        assert len([m for m in kit.runs.get(run_id).metrics if m.name == "loss"]) == steps
    assert (
        kit.registry.index_predictions(
            [
                PredictionEntry(f"p-{w}-{i}", AUTO, AUTO, 1, utcnow(), CHAMPION)
                for w in range(2)
                for i in range(steps)
            ]
        )
        == 0
    )


def test_concurrent_writers_never_share_a_version_or_break_the_chain(kit: Kit) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            register(kit)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(v.version for v in kit.registry.list_versions(AUTO)) == [1, 2, 3, 4, 5, 6]
    assert kit.registry.verify_audit().valid


def aif_audit_verify(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aif.cli", "audit", "verify", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_audit_chain_verifies_and_a_tampered_row_is_found(kit: Kit) -> None:
    v1, v2 = register(kit), register(kit)
    kit.registry.apply_evaluation(verdict(v1.key, True))
    kit.registry.apply_evaluation(verdict(v2.key, False))
    ok = aif_audit_verify(kit.url)
    assert ok.returncode == 0, ok.stderr
    assert "audit chain OK" in ok.stdout
    target = kit.registry.list_audit(AUTO)[3]
    engine = kit.store.db.engine
    postgres = kit.store.db.dialect == "postgresql"
    # The database itself refuses to change the log...
    with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_events SET reason = 'rewritten' WHERE sequence = :s"), {"s": target.sequence}
        )
    # ...so a tamperer has to switch the guard off first; the hash chain still finds the row.
    with engine.begin() as conn:
        conn.execute(
            text(
                "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"
                if postgres
                else "DROP TRIGGER audit_events_no_update"
            )
        )
        conn.execute(
            text("UPDATE audit_events SET reason = 'rewritten' WHERE sequence = :s"), {"s": target.sequence}
        )
    bad = aif_audit_verify(kit.url)
    assert bad.returncode == 1
    assert f"sequence {target.sequence}" in bad.stdout and target.event_id in bad.stdout
    report = kit.registry.verify_audit()
    assert (report.valid, report.first_invalid_sequence, report.first_invalid_event_id) == (
        False,
        target.sequence,
        target.event_id,
    )


class Publisher:
    """Stands in for the Kafka publisher: records what the relay hands it."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []

    async def publish_many(self, items: Sequence[Outgoing]) -> list[Any]:
        self.sent.extend(items)
        return []


async def test_the_outbox_relay_publishes_alias_changes_once(kit: Kit) -> None:
    v1, v2 = register(kit), register(kit)
    for v in (v1, v2):
        kit.registry.apply_evaluation(verdict(v.key, True))
    audit_ids = [r.event_id for r in kit.registry.list_audit(AUTO) if r.action == "alias.promote"]
    publisher = Publisher()
    relay = OutboxRelay(kit.store, publisher, name="registry-outbox", batch=2)  # type: ignore[arg-type]
    assert await relay.flush() == 3
    assert [(o.topic, o.key, o.use_case) for o in publisher.sent] == [(topics.MODEL_PROMOTED, AUTO, AUTO)] * 3
    # Event id = the audit entry's id: a republished event is deduplicated downstream.
    assert [o.event_id for o in publisher.sent] == audit_ids
    assert all(isinstance(o.event, registry_events.AliasChanged) for o in publisher.sent)
    assert pending_events(kit) == [] and await relay.flush() == 0


def test_database_errors_leave_the_store_as_libs_errors(kit: Kit) -> None:
    change = AliasChange(
        AUTO, AUTO, CHAMPION, 1, 0, AliasChangeKind.SET, "test", SYSTEM, (), utcnow(), "evt-x"
    )
    with kit.store.write() as tx:
        tx.add_outbox(change, utcnow())
    with pytest.raises(AlreadyExists), kit.store.write() as tx:  # the same event id twice
        tx.add_outbox(change, utcnow())
    assert len(pending_events(kit)) == 1  # the failed transaction left nothing
    # A database that cannot be reached (nothing listens on port 1) is Unavailable: callers retry.
    with pytest.raises(Unavailable):
        open_store("postgresql+psycopg://aif:aif@127.0.0.1:1/registry")
