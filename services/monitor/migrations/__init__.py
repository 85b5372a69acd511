"""Alembic migrations of the monitor database (run by ``MonitorStore.from_url`` at start)."""
