"""``aif`` command line.

aif demo      start the infrastructure and the seven services, check them, stop them
aif up        start the infrastructure and the seven services (restarted with backoff by
              supervisord when they crash); Ctrl-C stops them
aif usecase   scaffold (new NAME) or validate (validate FILE...) specs; onboard (apply FILE...),
              list, show or retire use cases in the running factory
aif token     development tokens (keygen, issue, revoke) and mTLS certificates (certs)
aif audit     verify (exit 1 naming a tampered entry) or list the registry's audit log
aif train     request a training (USE_CASE [--seed N] [--wait]: progress bar until it ends)
"""

from __future__ import annotations

import argparse
import sys

from aif.cli import audit, token, train, usecase


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aif", description="AI Factory command line")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run the factory's main job end to end on embedded defaults")
    sub.add_parser(
        "up", help="run infrastructure and services (under supervisord) in the foreground until Ctrl-C"
    )
    usecase.add_parser(sub)
    token.add_parser(sub)
    audit.add_parser(sub)
    train.add_parser(sub)
    args = parser.parse_args(argv)
    # Only these two need the infrastructure, stack and loop modules (pandas, aiokafka...).
    if args.command == "demo":
        from aif.cli import demo

        return demo.run()
    if args.command == "up":
        from aif.cli import up

        return up.up()
    if args.command == "usecase":
        return usecase.run(args)
    if args.command == "token":
        return token.run(args)
    if args.command == "audit":
        return audit.run(args)
    return train.run(args)


if __name__ == "__main__":
    sys.exit(main())
