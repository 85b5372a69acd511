"""``aif up``: the infrastructure and the seven services in the foreground until Ctrl-C.

The services run under supervisord (:mod:`aif.stack.supervised`): one that crashes, or
stops itself because a background worker died, is restarted with backoff, as Kubernetes
would. ``supervisorctl -c build/up/supervisord.conf status`` shows them while it runs;
each service logs to ``build/up/<service>.log``.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from aif import infra
from aif.stack import Stack
from aif.stack.supervised import SupervisedStack

ROOT = Path(__file__).resolve().parents[2]
RUN_DIR = ROOT / "build" / "up"


def _step(message: str) -> None:
    print(f"==> {message}", flush=True)


@contextlib.contextmanager
def _infrastructure() -> Iterator[dict[str, str]]:
    handles: list[infra.Handle] = []
    try:
        for name, ensure in (
            ("kafka", infra.ensure_kafka),
            ("postgres", infra.ensure_postgres),
            ("redis", infra.ensure_redis),
            ("triton", infra.ensure_triton),
        ):
            started = time.monotonic()
            handle: infra.Handle = ensure()
            handles.append(handle)
            how = "started" if handle.started else "reused"
            _step(f"{name:<9} {how} in {time.monotonic() - started:4.1f}s  ({handle.component.endpoint()})")
        # No folder is handed to the services: the gateway loads models into Triton through
        # its API, with files it fetches from the registry.
        yield {
            "AIF_KAFKA_BOOTSTRAP": handles[0].component.endpoint(),
            # The registry signs its audit chain's head every minute to the broker's
            # checkpoint topic, with a key beside (not in) its database: `aif audit verify`
            # then detects a rewrite of the database by its own superuser.
            "AIF_REGISTRY_AUDIT_CHECKPOINT_SECONDS": "60",
        }
    finally:
        for handle in reversed(handles):
            handle.stop()


def up() -> int:
    """Run everything in the foreground until Ctrl-C (or SIGTERM); 1 if supervisord died."""
    # SIGTERM unwinds like Ctrl-C, so the services and the infrastructure are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with _infrastructure() as env:
        supervised = SupervisedStack(Stack(RUN_DIR, env=env), RUN_DIR)
        supervised.start()
        # The shipped specs are onboarded as any user's would be (the registry's catalogue);
        # applying them again is a no-op. More: aif usecase apply FILE, no restart.
        started = time.monotonic()
        names = supervised.stack.apply_usecases(reason="aif up: the shipped specs")
        _step(f"use cases {', '.join(names)} applied and taken up in {time.monotonic() - started:.1f}s")
        _step(
            "running under supervisord (a crashed service is restarted with backoff); "
            f"supervisorctl -c {supervised.config_path} status; Ctrl-C stops everything"
        )
        try:
            code = supervised.wait()
        except KeyboardInterrupt:
            code = 0
        finally:
            supervised.stop()
    return 0 if code == 0 else 1
