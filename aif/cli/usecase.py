"""``aif usecase new NAME`` scaffolds a spec; ``aif usecase validate FILE...`` checks specs."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from libs.usecase import DEFAULT_DIR, TEMPLATE, UseCaseError, load_usecase, parse_usecase
from libs.usecase.model import NAME


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("usecase", help="scaffold or validate use-case specs")
    actions = parser.add_subparsers(dest="action", required=True)
    new = actions.add_parser("new", help="write a new spec from the template")
    new.add_argument("name")
    new.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    check = actions.add_parser("validate", help="validate spec files")
    check.add_argument("files", nargs="+", type=Path)


def run(args: argparse.Namespace) -> int:
    if args.action == "new":
        if not re.match(NAME, args.name):
            print(f"usecase: name {args.name!r} must match {NAME}", file=sys.stderr)
            return 2
        target = args.dir / f"{args.name}.yaml"
        if target.exists():
            print(f"usecase: {target} already exists", file=sys.stderr)
            return 2
        text = TEMPLATE.read_text().replace("__NAME__", args.name)
        parse_usecase(text, str(target))  # the template must always produce a valid spec
        target.write_text(text)
        print(f"wrote {target}; edit it, then: aif usecase validate {target}")
        return 0
    failed = 0
    for path in args.files:
        try:
            spec = load_usecase(path)
        except UseCaseError as exc:
            print(f"INVALID {exc.message}", file=sys.stderr)
            failed += 1
        else:
            print(
                f"ok      {path}: {spec.name} v{spec.version}, {spec.task}, "
                f"{len(spec.model_inputs())} model inputs"
            )
    return 1 if failed else 0
