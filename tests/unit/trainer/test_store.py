"""Job store: round trip, idempotent create, filters, survives reopening."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from libs.errors import NotFound
from libs.lifecycle.frames import Window
from libs.lifecycle.registry import MetricPoint, ModelKey
from services.trainer.domain import Job, JobState, Reason
from services.trainer.store import JobStore

pytestmark = pytest.mark.timeout(30)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_round_trip_and_idempotent_create(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'jobs.db'}"
    store = JobStore.from_url(url)
    job = Job(
        "j1",
        "loan",
        Reason.DRIFT,
        drift_report_id="rep-1",
        requested_by="monitor",
        requested_roles=("service",),
        seed=5,
        window=Window(T0 - timedelta(days=1), T0),
        params={"epochs": "3"},
        created_at=T0,
    )
    assert store.create(job) == (job, True)
    again, created = store.create(Job("j1", "other", Reason.MANUAL))
    assert not created and again == job
    updated = store.update(
        "j1",
        state=JobState.SUCCEEDED,
        model=ModelKey("loan", "loan", 2),
        metrics=(MetricPoint("auc", 0.9, "validation"),),
        finished_at=T0,
    )
    store.close()
    reopened = JobStore.from_url(url)  # a restarted trainer knows its jobs
    assert reopened.get("j1") == updated
    with pytest.raises(NotFound):
        reopened.get("nope")


def test_list_filters_and_orders(tmp_path: Path) -> None:
    store = JobStore.from_url(f"sqlite:///{tmp_path / 'jobs.db'}")
    for i in range(5):
        store.create(
            Job(f"j{i}", "loan" if i % 2 else "seg", Reason.MANUAL, created_at=T0 + timedelta(minutes=i))
        )
    store.update("j3", state=JobState.FAILED)
    assert [j.job_id for j in store.list()] == ["j4", "j3", "j2", "j1", "j0"]
    assert [j.job_id for j in store.list(use_case="loan")] == ["j3", "j1"]
    assert [j.job_id for j in store.list(states=(JobState.FAILED,))] == ["j3"]
    assert [j.job_id for j in store.list(limit=2, offset=1)] == ["j3", "j2"]
    assert [j.job_id for j in store.list(oldest_first=True, limit=1)] == ["j0"]


def test_a_database_from_before_the_migrations_keeps_its_jobs(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, inspect

    from services.trainer.store import METADATA

    path = tmp_path / "jobs.db"
    engine = create_engine(f"sqlite:///{path}")
    METADATA.create_all(engine)  # how the trainer made its table before it had migrations
    engine.dispose()
    store = JobStore.from_url(f"sqlite:///{path}")  # table there, no alembic_version: 0001 leaves it
    job = Job("j1", "loan", Reason.MANUAL, created_at=T0)
    assert store.create(job) == (job, True) and store.get("j1") == job
    store.close()
    engine = create_engine(f"sqlite:///{path}")
    assert "alembic_version" in inspect(engine).get_table_names()
    engine.dispose()
