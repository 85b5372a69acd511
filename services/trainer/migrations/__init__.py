"""Alembic migrations of the trainer database (run by ``JobStore.from_url`` at start)."""
