"""One way for a service to keep its state in SQL: SQLite by default, PostgreSQL in production.

Every service that has a database (registry, trainer, evaluator, monitor) opens it with
:class:`Database`, which owns what they would otherwise each get slightly wrong:

- the engine: a SQLite file's folder is created, ``pool_pre_ping`` on every backend;
- SQLite's pragmas (WAL, ``synchronous=NORMAL``, foreign keys, a 30 s busy timeout) and
  its transactions: :meth:`Database.write` takes the write lock at ``BEGIN IMMEDIATE``.
  A transaction that read first and wrote later would have to upgrade its lock, and
  SQLite refuses that at once ("database is locked") when another writer committed in
  between, without waiting on the busy timeout;
- database errors turned into :mod:`libs.errors` inside the store (:func:`translate`):
  a unique-key violation is :class:`~libs.errors.AlreadyExists`, a lost connection is
  :class:`~libs.errors.Unavailable`, so no caller ever sees a SQLAlchemy exception;
- the schema: :meth:`Database.migrate` runs the service's Alembic migrations to head
  (replicas starting together on PostgreSQL take turns under an advisory lock).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

from sqlalchemy import DateTime, Dialect, Engine, MetaData, TypeDecorator, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from libs.errors import AlreadyExists, Unavailable

_WRITE = "aif_write"


def sqlite_file(url: str | URL) -> Path | None:
    """The file a SQLite URL names (None for other backends and in-memory databases)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def engine_for(url: str | URL, *, echo: bool = False) -> Engine:
    """An engine for ``url`` with this module's SQLite setup (see :class:`Database`)."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        # Sessions are used from worker threads (asyncio.to_thread); SQLite's own
        # timeout matches busy_timeout below.
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    engine = create_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        _sqlite_transactions(engine)
    return engine


def _sqlite_transactions(engine: Engine) -> None:
    """Let SQLAlchemy, not the sqlite3 module, start transactions, so a writer can ask
    for the write lock at BEGIN (IMMEDIATE)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


@overload
def naive_utc(at: datetime) -> datetime: ...
@overload
def naive_utc(at: None) -> None: ...
def naive_utc(at: datetime | None) -> datetime | None:
    """``at`` as naive UTC, the form every backend stores alike (SQLite keeps no zone); a
    naive ``at`` is taken to be UTC already."""
    if at is None or at.tzinfo is None:
        return at
    return at.astimezone(UTC).replace(tzinfo=None)


@overload
def aware_utc(at: datetime) -> datetime: ...
@overload
def aware_utc(at: None) -> None: ...
def aware_utc(at: datetime | None) -> datetime | None:
    """A stored naive-UTC time, made timezone-aware again."""
    return None if at is None else at.replace(tzinfo=UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A column stored as naive UTC (the same on every backend), returned timezone-aware;
    a naive time given to it is refused, so a local time never passes for UTC."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UtcDateTime column")
        return naive_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return aware_utc(value)


@contextmanager
def translate(what: str) -> Iterator[None]:
    """Database errors raised inside as :mod:`libs.errors`; ``what`` names the object
    (``"job 'j-1'"``) in the message."""
    try:
        yield
    except IntegrityError as exc:
        raise AlreadyExists(f"{what} already exists") from exc
    except (OperationalError, PoolTimeout) as exc:
        raise Unavailable(f"database unavailable ({what}): {_first_line(exc)}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise Unavailable(f"database connection lost ({what})") from exc
        raise


def _first_line(exc: DBAPIError | PoolTimeout) -> str:
    """The driver's own message, one line, bounded (SQLAlchemy appends the statement)."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


class Database:
    """A service's database: engine, sessions that read or write, migrations."""

    def __init__(self, url: str | URL, *, echo: bool = False) -> None:
        self.url = make_url(url)
        self.dialect = self.url.get_backend_name()
        self.engine: Engine = engine_for(self.url, echo=echo)

    @classmethod
    def migrated(cls, url: str | URL, migrations: Path, metadata: MetaData) -> Database:
        """A database on ``url`` with its schema migrated to head first (closed again when
        that fails); a database that cannot be reached is :class:`~libs.errors.Unavailable`."""
        db = cls(url)
        try:
            with translate(f"the schema of {migrations.parent.name}"):
                db.migrate(migrations, metadata=metadata)
        except BaseException:
            db.close()
            raise
        return db

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session in a transaction that only reads (committed at the end; no write lock)."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in a transaction that writes: committed when the block ends, rolled
        back on an exception. On SQLite it holds the write lock from its first statement."""
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn = conn.execution_options(**{_WRITE: True})
            with Session(bind=conn, expire_on_commit=False) as session, session.begin():
                yield session

    def migrate(self, migrations: Path, *, metadata: MetaData | None = None) -> None:
        """``alembic upgrade head`` with the migrations in ``migrations`` (a folder with
        ``env.py`` and ``versions/``). ``metadata`` is handed to ``env.py`` as the target."""
        # Imported here: read-only tools (``aif audit verify``) do not pay for Alembic.
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(migrations))
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Replicas starting together migrate one after the other; one lock per
                # migrations folder, so two services sharing a database do not wait on each other.
                key = zlib.crc32(
                    str(
                        migrations.name if migrations.name != "migrations" else migrations.parent.name
                    ).encode()
                )
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            cfg.attributes["connection"] = conn
            cfg.attributes["metadata"] = metadata
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()


def run_migrations(target_metadata: MetaData | None = None) -> None:
    """The body of a service's Alembic ``env.py``: migrate the connection that
    :meth:`Database.migrate` hands over, or, from the ``alembic`` command line, the
    ``sqlalchemy.url`` of its config."""
    from alembic import context
    from sqlalchemy import engine_from_config, pool

    config = context.config
    metadata = config.attributes.get("metadata") or target_metadata
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(
        config.get_section(config.config_ini_section) or {}, prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with engine.connect() as conn:
        context.configure(
            connection=conn, target_metadata=metadata, render_as_batch=conn.dialect.name == "sqlite"
        )
        with context.begin_transaction():
            context.run_migrations()


__all__ = [
    "Database",
    "UtcDateTime",
    "aware_utc",
    "engine_for",
    "naive_utc",
    "run_migrations",
    "sqlite_file",
    "translate",
]
