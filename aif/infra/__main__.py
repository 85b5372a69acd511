"""CLI: ``python -m aif.infra {install,up,down,status} [component ...]``."""

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aif.infra", description=__doc__)
    parser.add_argument("command", choices=["install", "up", "down", "status"])
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
        for name in names:
            print(COMPONENTS[name](config).status())
        return 0
    except InfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
