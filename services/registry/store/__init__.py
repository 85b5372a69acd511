"""Registry storage: the abstract contract and its SQLAlchemy implementation.

>>> store = open_store("sqlite:///build/registry/registry.db")   # runs the migrations
>>> with store.write() as tx:
...     tx.append_audit(draft, time_us)
"""
from __future__ import annotations

from services.registry.store.base import OutboxItem, RegistryStore, StoreTx
from services.registry.store.sql import MIGRATIONS_DIR, SqlStore, open_store

__all__ = ["MIGRATIONS_DIR", "OutboxItem", "RegistryStore", "SqlStore", "StoreTx", "open_store"]
