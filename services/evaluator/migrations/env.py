"""Alembic environment of the evaluator database (see :func:`libs.sql.run_migrations`)."""

from libs.sql import run_migrations
from services.evaluator.store import METADATA

run_migrations(METADATA)
