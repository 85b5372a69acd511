"""Alembic environment of the monitor database (see :func:`libs.sql.run_migrations`)."""

from libs.sql import run_migrations
from services.monitor.store import METADATA

run_migrations(METADATA)
