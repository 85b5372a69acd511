"""Alembic environment of the registry's database (see :func:`libs.sql.run_migrations`)."""

from libs.sql import run_migrations
from services.registry.store import METADATA

run_migrations(METADATA)
