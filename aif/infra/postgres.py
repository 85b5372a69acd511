"""PostgreSQL: a private cluster under build/infra/postgres/data, on loopback only."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._component import Component, Handle
from ._proc import InfraError, NotReady, run_quiet
from .config import InfraConfig

DATABASE = USER = PASSWORD = "aifactory"
SUPERUSER = "postgres"
# The registry's runtime role: it owns nothing; USER (the owner) migrates and grants it what
# serving needs (services/registry/store/roles.py: INSERT and SELECT only on the audit log).
# Use it as AIF_REGISTRY_DATABASE_URL with AIF_REGISTRY_DATABASE_OWNER_URL = dsn(config).
REGISTRY_RUNTIME_USER = REGISTRY_RUNTIME_PASSWORD = "aifactory_registry"
OS_USER = "postgres"  # postgres refuses to run as root


def bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<ver>/bin (Debian keeps server binaries there)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: float(p.parent.parent.name) if p.parent.parent.name.replace(".", "").isdigit() else 0,
    )
    if found:
        return found[-1].parent
    which = shutil.which("postgres")
    return Path(which).resolve().parent if which else None


def dsn(
    config: InfraConfig, user: str = USER, password: str | None = PASSWORD, database: str = DATABASE
) -> str:
    auth = f"{user}:{password}" if password else user
    return f"postgresql://{auth}@{config.host}:{config.pg_port}/{database}"


class Postgres(Component):
    name = "postgres"
    # SIGINT is postgres' "fast" shutdown; SIGTERM ("smart") waits for clients to leave.
    stop_signal = signal.SIGINT

    @property
    def port(self) -> int:
        return self.config.pg_port

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    def _bin(self, tool: str) -> str:
        bins = bin_dir()
        if bins is None:
            raise InfraError(self.name, "postgres binaries not found: run `python -m aif.infra install`")
        return str(bins / tool)

    def _user(self) -> str | None:
        return OS_USER if os.geteuid() == 0 else None

    # Hooks for a cluster that other hosts reach with passwords (aif.multihost): what
    # initdb sets up, what is written once after it, and where the server listens.
    def _initdb_auth(self) -> list[str]:
        """initdb's authentication arguments. trust: a throwaway cluster bound to 127.0.0.1;
        the role still gets a password so the same DSN works against a real server."""
        return ["--auth=trust"]

    def _configure(self) -> None:
        """Runs once, right after initdb (e.g. to write pg_hba.conf)."""

    def _listen_addresses(self) -> str:
        return self.config.host

    def spawn(self) -> int:
        self.dir.mkdir(parents=True, exist_ok=True)
        user = self._user()
        if not (self.data_dir / "PG_VERSION").exists():
            self.data_dir.mkdir(mode=0o700, exist_ok=True)
            if user:
                shutil.chown(self.data_dir, user, user)
            run_quiet(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    *self._initdb_auth(),
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-instructions",
                ],
                self.name,
                self.daemon.log_file,
                user=user,
                cwd="/",
            )
            self._configure()
        argv = [
            self._bin("postgres"),
            "-D",
            str(self.data_dir),
            "-c",
            f"listen_addresses={self._listen_addresses()}",
            "-p",
            str(self.port),
            # TCP only: no clash with a system cluster's socket in /var/run/postgresql.
            "-c",
            "unix_socket_directories=",
            # Disposable dev data: trade crash safety for speed on a small box.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]
        return self.daemon.spawn(argv, user=user, cwd=Path("/"))

    def probe(self) -> None:
        import psycopg

        try:
            with psycopg.connect(dsn(self.config), connect_timeout=3) as conn:
                missing_runtime = not _has_role(conn, REGISTRY_RUNTIME_USER)
        except psycopg.OperationalError as exc:
            if not _accepting(self.config):
                raise NotReady(str(exc).strip()) from exc
            first = exc
        else:
            if missing_runtime:  # a cluster made before the runtime role existed
                with contextlib.suppress(psycopg.Error):  # an external server: set up by hand
                    self._bootstrap()
            return
        # Up but the app role or database is missing: create them as superuser (works
        # on our own trust-auth cluster; an external server has to be set up by hand).
        try:
            self._bootstrap()
        except psycopg.OperationalError as exc:
            if not _accepting(self.config):
                raise NotReady(str(exc).strip()) from exc
            raise InfraError(
                self.name,
                f"{self.endpoint()} answers but rejects {dsn(self.config, password='***')}: "
                f"{str(first).strip()}; stop that server or set AIF_PG_PORT",
                self.daemon.log_file if self.daemon.pid() else None,
            ) from exc

    def _bootstrap(self) -> None:
        import psycopg
        from psycopg import sql

        admin = dsn(self.config, user=SUPERUSER, password=None, database="postgres")
        with psycopg.connect(admin, connect_timeout=3, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [USER]).fetchone():
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(USER), sql.Literal(PASSWORD)
                    )
                )
            if not _has_role(conn, REGISTRY_RUNTIME_USER):
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(REGISTRY_RUNTIME_USER), sql.Literal(REGISTRY_RUNTIME_PASSWORD)
                    )
                )
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(DATABASE), sql.Identifier(USER)
                    )
                )


def _has_role(conn: Any, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone() is not None


def _accepting(config: InfraConfig) -> bool:
    """Whether the server accepts connections (libpq's ``PQping``, as ``pg_isready``).

    A failed connect says why only in its text (psycopg has no SQLSTATE for connection
    errors), so the state is asked separately, as a typed answer: anything but
    ``Ping.OK`` (no response, or up but refusing: starting, shutting down, recovering)
    is worth waiting for; ``OK`` means the failure was the role or the database."""
    from psycopg import pq

    return pq.PGconn.ping(f"{dsn(config)}?connect_timeout=3".encode()) == pq.Ping.OK


@dataclass(kw_only=True)
class PostgresHandle(Handle):
    """A reachable PostgreSQL; ``dsn`` logs in as role/database ``aifactory``."""

    dsn: str


def ensure_postgres(config: InfraConfig | None = None, timeout: float | None = None) -> PostgresHandle:
    """Reuses the server on the PG port if it accepts the DSN, else starts a cluster."""
    comp = Postgres(config or InfraConfig.from_env())
    started = comp.ensure(timeout)
    return PostgresHandle(
        started=started, log_file=comp.daemon.log_file, component=comp, dsn=dsn(comp.config)
    )
