"""Redis on loopback, in memory only (no RDB/AOF files: tests start from empty)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from ._component import Component, Handle
from ._proc import InfraError, NotReady
from .config import InfraConfig


class Redis(Component):
    name = "redis"
    default_timeout = 30.0

    @property
    def port(self) -> int:
        return self.config.redis_port

    # Hooks for a server that other hosts reach with a password (aif.multihost).
    def _config_args(self) -> list[str]:
        """Arguments before the others: a configuration file (redis-server wants it first),
        so that a password is never on the command line."""
        return []

    def _password(self) -> str | None:
        return None

    def spawn(self) -> int:
        server = shutil.which("redis-server")
        if server is None:
            raise InfraError(self.name, "redis-server not found: run `python -m aif.infra install`")
        self.dir.mkdir(parents=True, exist_ok=True)
        # Foreground (daemonize no): our pid file tracks it and its log is our stdout.
        return self.daemon.spawn(
            [
                server,
                *self._config_args(),
                "--bind",
                self.config.host,
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.dir),
                "--logfile",
                "",
            ],
            cwd=self.dir,
        )

    def probe(self) -> None:
        import redis

        client = redis.Redis(
            host=self.config.host,
            port=self.port,
            password=self._password(),
            socket_timeout=2,
            socket_connect_timeout=2,
        )
        try:
            client.ping()
        except (redis.ConnectionError, redis.TimeoutError) as exc:  # incl. BusyLoading
            raise NotReady(str(exc)) from exc
        except redis.RedisError as exc:  # e.g. NOAUTH: someone else's server
            raise InfraError(
                self.name, f"{self.endpoint()} answers but: {exc}", self.daemon.log_file
            ) from exc
        finally:
            client.close()


@dataclass(kw_only=True)
class RedisHandle(Handle):
    """A reachable Redis; ``url`` is ``redis://host:port/0``."""

    url: str


def ensure_redis(config: InfraConfig | None = None, timeout: float | None = None) -> RedisHandle:
    """Reuses the server on the Redis port or starts one; waits for PING."""
    comp = Redis(config or InfraConfig.from_env())
    started = comp.ensure(timeout)
    return RedisHandle(
        started=started, log_file=comp.daemon.log_file, component=comp, url=f"redis://{comp.endpoint()}/0"
    )
