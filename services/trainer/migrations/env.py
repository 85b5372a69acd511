"""Alembic environment of the trainer database (see :func:`libs.sql.run_migrations`)."""

from libs.sql import run_migrations
from services.trainer.store import METADATA

run_migrations(METADATA)
