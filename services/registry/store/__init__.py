"""Registry storage: the abstract contract and its SQLAlchemy implementation.

``METADATA`` is the schema the Alembic migrations in ``MIGRATIONS`` create.

>>> store = open_store("sqlite:///build/registry/registry.db")   # runs the migrations
>>> with store.write() as tx:
...     tx.append_audit(draft, time_us)
"""

from __future__ import annotations

from services.registry.store.base import RegistryStore, StoreTx
from services.registry.store.sql import MIGRATIONS, SqlStore, open_store
from services.registry.store.tables import METADATA

__all__ = ["METADATA", "MIGRATIONS", "RegistryStore", "SqlStore", "StoreTx", "open_store"]
