"""``aif`` command line.

    aif demo      start the infrastructure and the seven services, check them, stop them
    aif up        start the infrastructure and the seven services; Ctrl-C stops them
    aif usecase   scaffold (new NAME) or validate (validate FILE...) use-case specs
"""
from __future__ import annotations

import argparse
import sys

from libs.cli import demo, usecase


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aif", description="AI Factory command line")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run the factory's main job end to end on embedded defaults")
    sub.add_parser("up", help="run infrastructure and services in the foreground until Ctrl-C")
    usecase.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo.run()
    if args.command == "usecase":
        return usecase.run(args)
    return demo.up()


if __name__ == "__main__":
    sys.exit(main())
