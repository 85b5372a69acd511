"""Alembic migrations of the registry database (run by ``store.open_store`` at start)."""
