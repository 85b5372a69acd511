"""``python -m aif.multihost.infrahost COMPONENT``: start one infrastructure part on the
host this runs on (run there by :mod:`aif.multihost.layout`, as the host's own user).

The part is :mod:`aif.infra`'s own component, started with its own code: its files under
``$HOME/infra`` (the host's private folder), listening on the host's address (Kafka on
its name, so it advertises ``kafka:9092`` as a cluster's broker would), the installed
tools (Kafka jars, Triton's python backend) read from the repository's ``build/infra``.
PostgreSQL and Redis are variants: password (SCRAM) logins only, from the layout's
subnet, with a role and a database per service that needs one (:class:`PasswordPostgres`);
a password for Redis (:class:`PasswordRedis`).

Environment: ``AIFMH_ADDRESS`` (this host's address), ``AIFMH_TOOLS_DIR``; for postgres
``AIFMH_SUBNET`` (CIDR allowed to log in), ``AIFMH_PG_SUPERUSER_FILE`` (the superuser's
password) and ``AIFMH_PG_ROLES_FILE`` (JSON: role → password; each gets a database of
its name, which only it may connect to); for redis ``AIFMH_REDIS_PASSWORD_FILE``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

from aif.infra import COMPONENTS, Component, InfraConfig, InfraError
from aif.infra._proc import NotReady
from aif.infra.postgres import SUPERUSER, Postgres
from aif.infra.redis import Redis


def _secret(name: str) -> str:
    return Path(os.environ[name]).read_text().strip()


class PasswordPostgres(Postgres):
    """PostgreSQL that other hosts reach: SCRAM-SHA-256 for every login (the superuser's
    password set by initdb), from ``clients`` (a CIDR) and this host's loopback only."""

    def __init__(self, config: InfraConfig, superuser_file: Path, clients: str) -> None:
        super().__init__(config)
        self.superuser_file = superuser_file
        self.clients = clients

    def _initdb_auth(self) -> list[str]:
        return ["--auth=scram-sha-256", f"--pwfile={self.superuser_file}"]

    def _configure(self) -> None:
        (self.data_dir / "pg_hba.conf").write_text(
            "# aif.multihost: password (SCRAM) logins only; no unix socket, no trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            f"host all all {self.clients} scram-sha-256\n"
        )

    def admin_dsn(self) -> str:
        password = self.superuser_file.read_text().strip()
        return f"postgresql://{SUPERUSER}:{password}@{self.config.host}:{self.port}/postgres"

    def probe(self) -> None:
        import psycopg
        from psycopg import pq

        try:
            with psycopg.connect(self.admin_dsn(), connect_timeout=3):
                return
        except psycopg.OperationalError as exc:
            ping = pq.PGconn.ping(f"host={self.config.host} port={self.port} connect_timeout=3".encode())
            if ping != pq.Ping.OK:
                raise NotReady(str(exc).strip()) from exc
            raise InfraError(self.name, f"up but refuses the superuser: {str(exc).strip()}") from exc

    def ensure_roles(self, roles: dict[str, str]) -> None:
        """A login role and a database it owns per entry; PUBLIC may not connect to it."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.admin_dsn(), connect_timeout=5, autocommit=True) as conn:
            for role, password in roles.items():
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
                verb = "ALTER" if exists else "CREATE"
                conn.execute(
                    sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(password)
                    )
                )
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [role]).fetchone():
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(
                            sql.Identifier(role), sql.Identifier(role)
                        )
                    )
                conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(role)))


class PasswordRedis(Redis):
    """Redis that other hosts reach: a password (``requirepass``, from a 0600 configuration
    file in the host's folder, never on the command line), protected mode then satisfied."""

    def __init__(self, config: InfraConfig, password_file: Path) -> None:
        super().__init__(config)
        self.password_file = password_file

    def _config_args(self) -> list[str]:
        conf = self.dir / "redis.conf"
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"requirepass {self._password()}\n")
        return [str(conf)]

    def _password(self) -> str:
        return self.password_file.read_text().strip()


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("kafka", "postgres", "redis", "triton"):
        print("usage: python -m aif.multihost.infrahost {kafka,postgres,redis,triton}", file=sys.stderr)
        return 2
    name = argv[0]
    home = Path(os.environ["HOME"])
    address = os.environ["AIFMH_ADDRESS"]
    config = InfraConfig(
        infra_dir=home / "infra",
        # Kafka listens on (and advertises) its name; the others bind the address it names.
        host=socket.gethostname() if name == "kafka" else address,
        tools_dir=Path(os.environ["AIFMH_TOOLS_DIR"]),
    )
    component: Component
    try:
        if name == "postgres":
            pg = PasswordPostgres(
                config, Path(os.environ["AIFMH_PG_SUPERUSER_FILE"]), os.environ["AIFMH_SUBNET"]
            )
            pg.ensure()
            pg.ensure_roles(json.loads(_secret("AIFMH_PG_ROLES_FILE")))
            component = pg
        elif name == "redis":
            component = PasswordRedis(config, Path(os.environ["AIFMH_REDIS_PASSWORD_FILE"]))
            component.ensure()
        else:
            component = COMPONENTS[name](config)
            component.ensure()
    except InfraError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    print(f"{name} ready on {component.endpoint()} as uid {os.getuid()}, files in {component.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
