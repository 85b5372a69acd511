"""``aif usecase``: write and check specs offline; onboard, change and retire them in a running factory.

    aif usecase new NAME [--dir DIR]          scaffold a spec from the template
    aif usecase validate FILE...              check specs offline (errors name key and line)
    aif usecase apply FILE... [--dry-run]     onboard each spec into the running factory, or
                                              apply it as the next version of its use case
    aif usecase list [--all]                  the registry's catalogue (--all: retired too)
    aif usecase show NAME [--version N]       one use case's entry and spec
    aif usecase retire NAME --reason TEXT     stop ingesting, serving and monitoring it

``apply``, ``list``, ``show`` and ``retire`` call the registry, which owns the catalogue
and publishes every change to all seven services (no restart, no file copied to any of
them). A change that needs a new model (features, label, task, record schema) is
refused naming the field (see libs/usecase/compat.py). The registry is ``--target`` or
``AIF_REGISTRY_TARGET`` (default 127.0.0.1:50055); the bearer token is ``--token`` or
``AIF_TOKEN`` (``aif token issue --role NAME:ml-engineer``). Exit status: 0 done; 1 a
spec was invalid or refused; 2 the registry was unreachable or the caller not allowed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import grpc

from aifactory.registry.v1 import events_pb2 as registry_events
from aifactory.registry.v1 import registry_service_pb2 as pb
from aifactory.registry.v1 import registry_service_pb2_grpc as pb_grpc
from libs.usecase import DEFAULT_DIR, TEMPLATE, UseCaseError, load_usecase, parse_usecase
from libs.usecase.model import NAME

Metadata = Sequence[tuple[str, str]]
OUTCOMES = {
    pb.USE_CASE_APPLY_OUTCOME_CREATED: "created",
    pb.USE_CASE_APPLY_OUTCOME_UPDATED: "updated",
    pb.USE_CASE_APPLY_OUTCOME_UNCHANGED: "unchanged",
}
STATES = {registry_events.USE_CASE_STATE_ACTIVE: "active", registry_events.USE_CASE_STATE_RETIRED: "retired"}
# Refusals of the spec itself (exit 1), as opposed to the call (exit 2).
REFUSED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("usecase", help="write, check, onboard, list, show or retire use-case specs")
    actions = parser.add_subparsers(dest="action", required=True)
    new = actions.add_parser("new", help="write a new spec from the template")
    new.add_argument("name")
    new.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    check = actions.add_parser("validate", help="validate spec files (offline)")
    check.add_argument("files", nargs="+", type=Path)
    apply = actions.add_parser("apply", help="onboard specs into the running factory (or update them)")
    apply.add_argument("files", nargs="+", type=Path)
    apply.add_argument("--reason", default="", help="why, for the audit log")
    apply.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")
    listing = actions.add_parser("list", help="the registry's use-case catalogue")
    listing.add_argument("--all", action="store_true", help="retired use cases too")
    show = actions.add_parser("show", help="one use case's entry and spec")
    show.add_argument("name")
    show.add_argument("--version", type=int, default=0, help="an earlier version (default: current)")
    retire = actions.add_parser("retire", help="retire a use case in the running factory")
    retire.add_argument("name")
    retire.add_argument("--reason", required=True, help="why, for the audit log")
    for remote in (apply, listing, show, retire):
        remote.add_argument("--target", default=os.environ.get("AIF_REGISTRY_TARGET", "127.0.0.1:50055"))
        remote.add_argument("--token", default=os.environ.get("AIF_TOKEN") or None, help="bearer token")


# ---------------------------------------------------------------- the registry's client


def apply_files(
    target: str, files: Iterable[Path], metadata: Metadata, *, reason: str = "", dry_run: bool = False
) -> list[pb.ApplyUseCaseResponse]:
    """``ApplyUseCase`` for each spec file, in order (``aif.loop`` and ``aif up`` onboard the
    shipped specs with it). A spec that does not validate locally raises
    :class:`~libs.usecase.UseCaseError`; a refusal of the registry, ``grpc.RpcError``."""
    replies = []
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.RegistryServiceStub(channel)
        for path in files:
            spec = load_usecase(path)  # the file's own errors, with their line, before any call
            replies.append(
                stub.ApplyUseCase(
                    pb.ApplyUseCaseRequest(
                        use_case=spec.name,
                        spec_yaml=path.read_text(encoding="utf-8"),
                        reason=reason,
                        dry_run=dry_run,
                    ),
                    metadata=list(metadata),
                    timeout=30,
                )
            )
    return replies


def _metadata(token: str | None) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")] if token else []


def _describe(reply: pb.ApplyUseCaseResponse, dry_run: bool) -> str:
    entry = reply.use_case
    what = OUTCOMES.get(reply.outcome, "?")
    head = f"{'would be ' if dry_run else ''}{what:<9} {entry.use_case} v{entry.version}"
    if reply.changes:
        head += ": " + ", ".join(c.field for c in reply.changes)
    if reply.audit_event_id:
        head += f" (audit {reply.audit_event_id})"
    return head


# ---------------------------------------------------------------- commands


def run(args: argparse.Namespace) -> int:
    if args.action == "new":
        return _new(args)
    if args.action == "validate":
        return _validate(args.files)
    try:
        if args.action == "apply":
            return _apply(args)
        with grpc.insecure_channel(args.target) as channel:
            stub = pb_grpc.RegistryServiceStub(channel)
            metadata = _metadata(args.token)
            if args.action == "list":
                reply = stub.ListUseCases(
                    pb.ListUseCasesRequest(include_retired=args.all), metadata=metadata, timeout=30
                )
                if not reply.use_cases:
                    print("no use case in the catalogue: aif usecase apply FILE onboards one")
                for e in reply.use_cases:
                    print(
                        f"{e.use_case:<24} v{e.version:<4} {STATES.get(e.state, '?'):<8} "
                        f"{e.updated_at.ToDatetime():%Y-%m-%d %H:%M:%S} by {e.updated_by.subject}"
                    )
                return 0
            if args.action == "show":
                entry = stub.GetUseCase(
                    pb.GetUseCaseRequest(use_case=args.name, version=args.version),
                    metadata=metadata,
                    timeout=30,
                ).use_case
                print(
                    f"# {entry.use_case} v{entry.version} ({STATES.get(entry.state, '?')}), sha256 "
                    f"{entry.spec_sha256}; updated {entry.updated_at.ToDatetime():%Y-%m-%d %H:%M:%S} "
                    f"by {entry.updated_by.subject}"
                )
                print(entry.spec_yaml.rstrip())
                return 0
            retired = stub.RetireUseCase(
                pb.RetireUseCaseRequest(use_case=args.name, reason=args.reason), metadata=metadata, timeout=30
            )
            done = "retired" if retired.audit_event_id else "was retired already"
            print(f"{retired.use_case.use_case} v{retired.use_case.version} {done}")
            return 0
    except grpc.RpcError as exc:
        code = exc.code()  # type: ignore[attr-defined]
        print(f"aif usecase {args.action}: {code.name}: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
        return 1 if code in REFUSED else 2


def _apply(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            (reply,) = apply_files(
                args.target, [path], _metadata(args.token), reason=args.reason, dry_run=args.dry_run
            )
        except UseCaseError as exc:
            print(f"INVALID {exc.message}", file=sys.stderr)
            failed += 1
            continue
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            print(f"REFUSED {path}: {code.name}: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
            if code not in REFUSED:
                return 2
            failed += 1
            continue
        print(f"{_describe(reply, args.dry_run)}  ({path})")
    return 1 if failed else 0


def _new(args: argparse.Namespace) -> int:
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
    print(f"wrote {target}; edit it, then: aif usecase validate {target} && aif usecase apply {target}")
    return 0


def _validate(files: Sequence[Path]) -> int:
    failed = 0
    for path in files:
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
