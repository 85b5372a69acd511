"""Alembic migrations of the evaluator database (run by ``ReportStore.from_url`` at start)."""
