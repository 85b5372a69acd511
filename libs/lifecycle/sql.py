"""SQLAlchemy engines for the services' own small stores (trainer jobs, evaluator reports)."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url


def engine_for(url: str) -> Engine:
    """An engine for ``url`` (SQLite by default, PostgreSQL in production); a SQLite
    file's folder is created when missing."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return create_engine(url)
