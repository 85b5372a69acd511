"""Every service's Alembic migrations build exactly the schema its store's tables declare.

A fresh SQLite database is migrated to head with the service's own migrations
(libs.sql.Database.migrate), then compared with the store's SQLAlchemy metadata by
Alembic's autogenerate comparison: a table, column, index or type that one side has and
the other lacks is a difference, and a forgotten migration fails here, not in production.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from libs.sql import Database

SERVICES = ["registry", "trainer", "evaluator", "monitor"]


@pytest.mark.parametrize("service", SERVICES)
def test_migrations_match_the_store_tables(service: str, tmp_path: Path) -> None:
    store = importlib.import_module(f"services.{service}.store")
    db = Database(f"sqlite:///{tmp_path / f'{service}.db'}")
    try:
        db.migrate(store.MIGRATIONS, metadata=store.METADATA)
        with db.engine.connect() as conn:
            assert "alembic_version" in inspect(conn).get_table_names()
            diff = compare_metadata(MigrationContext.configure(conn), store.METADATA)
        assert diff == [], f"{service}: migrations and tables differ: {diff}"
        # Running them again on a migrated database changes nothing.
        db.migrate(store.MIGRATIONS, metadata=store.METADATA)
    finally:
        db.close()
