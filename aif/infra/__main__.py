"""CLI: ``python -m aif.infra {install,up,down,status} [component ...]``.

``python -m aif.infra kafka-acls [--follow]``: the secure broker's admin step after a use case
is applied at run time: its producer, raw topic and ACLs from the live catalogue (once, or
following the catalogue until Ctrl-C).
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from . import COMPONENTS, DEFAULT_COMPONENTS, InfraConfig, InfraError
from .install import install


def _up(config: InfraConfig, names: list[str]) -> int:
    """Starts the components side by side (Kafka's JVM dominates), one line each."""

    def one(name: str) -> str:
        comp = COMPONENTS[name](config)
        t0 = time.monotonic()
        started = comp.ensure()
        verb = "started" if started else "reused "
        return f"{name:<9} {verb} in {time.monotonic() - t0:5.1f}s  {comp.endpoint()}"

    failed = 0
    with ThreadPoolExecutor(len(names)) as pool:
        for name, fut in [(n, pool.submit(one, n)) for n in names]:
            try:
                print(fut.result(), flush=True)
            except Exception as exc:  # noqa: BLE001 - report every component, then fail
                failed += 1
                print(
                    f"{name:<9} FAILED: {exc!r}"
                    if not isinstance(exc, InfraError)
                    else f"{name:<9} FAILED: {exc}",
                    file=sys.stderr,
                    flush=True,
                )
    return 1 if failed else 0


def _down(config: InfraConfig, names: list[str]) -> int:
    for name in reversed(names):
        comp = COMPONENTS[name](config)
        if comp.stop():
            print(f"{name:<9} stopped", flush=True)
        elif comp.running():
            print(f"{name:<9} left running: not started by aif.infra ({comp.endpoint()})")
        else:
            print(f"{name:<9} not running")
    return 0


def _kafka_acls(config: InfraConfig, *, follow: bool) -> int:
    """Sets the secure broker's producers and ACLs to its use cases and its live catalogue's."""
    import asyncio
    import signal

    from .kafka_secure import KafkaSecure

    secure = KafkaSecure(config)
    if not secure.running():
        raise InfraError(secure.name, f"nothing on {secure.endpoint()}: python -m aif.infra up kafka-secure")
    if not follow:
        print(f"kafka-acls: use cases {', '.join(secure.setup(secure.use_cases, with_catalogue=True))}")
        return 0

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"kafka-acls: following the catalogue on {secure.endpoint()} (Ctrl-C stops)", flush=True)
        await secure.follow_catalogue(stop)

    asyncio.run(run())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aif.infra", description=__doc__)
    parser.add_argument("command", choices=["install", "up", "down", "status", "kafka-acls"])
    parser.add_argument("--follow", action="store_true", help="kafka-acls: follow the catalogue until Ctrl-C")
    parser.add_argument(
        "components",
        nargs="*",
        metavar="component",
        help=f"any of {', '.join(COMPONENTS)} (default: {', '.join(DEFAULT_COMPONENTS)}; "
        "down and status: all)",
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.components if n not in COMPONENTS]
    if unknown:
        parser.error(f"unknown component {', '.join(unknown)} (choose from {', '.join(COMPONENTS)})")
    everything = list(COMPONENTS) if args.command in ("down", "status") else list(DEFAULT_COMPONENTS)
    names = args.components or everything
    config = InfraConfig.from_env()
    try:
        if args.command == "install":
            install(config, names)
            return 0
        if args.command == "up":
            return _up(config, names)
        if args.command == "down":
            return _down(config, names)
        if args.command == "kafka-acls":
            return _kafka_acls(config, follow=args.follow)
        for name in names:
            print(COMPONENTS[name](config).status())
        return 0
    except InfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
