"""``aif usecase``: write and check specs offline; onboard, change and retire them in a running factory.

    aif usecase new NAME [--dir DIR]          scaffold a spec from the template
    aif usecase validate FILE...              check specs offline (errors name key and line)
    aif usecase apply FILE... [--dry-run]     onboard each spec into the running factory, or
                                              apply it as the next version of its use case
    aif usecase list [--all]                  the registry's catalogue (--all: retired too)
    aif usecase show NAME [--version N]       one use case's entry and spec
    aif usecase schema NAME [--version N]     its raw record contract as JSON Schema
    aif usecase retire NAME --reason TEXT     stop ingesting, serving and monitoring it

``apply``, ``list``, ``show``, ``schema`` and ``retire`` call the registry, which owns the
catalogue and publishes every change to all seven services (no restart, no file copied
to any of them). A change that needs a new model (features, label, task, record schema)
is refused naming the field (see libs/usecase/compat.py). The registry is ``--target``,
``aif --registry`` or ``AIF_REGISTRY_TARGET``, else the context's; the bearer token
``--token``, ``aif --token``/``--token-file`` or ``AIF_TOKEN``. Exit status: 0 done; 1 a
spec was invalid or refused; 2 the registry was unreachable or the caller not allowed.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from rich.console import Console

from aif.cli.output import REFUSED, CliError, emit_json, out, rpc_error, to_dict
from aif.cli.remote import remote, run
from aif.cli.schema import json_schema
from aifactory.registry.v1 import events_pb2 as registry_events
from aifactory.registry.v1 import registry_service_pb2 as pb
from aifactory.registry.v1 import registry_service_pb2_grpc as pb_grpc
from libs.rpc.client import ClientTls, blocking_channel
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
REFUSED_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
}

app = typer.Typer(
    help="write, check, onboard, list, show, schema or retire use-case specs", no_args_is_help=True
)
Json = Annotated[bool, typer.Option("--json", help="print JSON")]
TargetOpt = Annotated[str | None, typer.Option("--target", help="the registry (default: aif --registry)")]
TokenOpt = Annotated[
    str | None, typer.Option("--token", help="bearer token (default: aif --token/--token-file)")
]


# ---------------------------------------------------------------- the registry's client


def apply_files(
    target: str,
    files: Iterable[Path],
    metadata: Metadata,
    *,
    reason: str = "",
    dry_run: bool = False,
    tls: ClientTls | None = None,
) -> list[pb.ApplyUseCaseResponse]:
    """``ApplyUseCase`` for each spec file, in order (``aif.loop`` and ``aif up`` onboard the
    shipped specs with it). A spec that does not validate locally raises
    :class:`~libs.usecase.UseCaseError`; a refusal of the registry, ``grpc.RpcError``."""
    replies = []
    with blocking_channel(target, tls) as channel:
        stub = pb_grpc.RegistryServiceStub(channel)
        for path in files:
            spec = load_usecase(path)  # the file's own errors, with their line, before any call
            replies.append(
                stub.ApplyUseCase(
                    _apply_request(path, spec.name, reason, dry_run), metadata=list(metadata), timeout=30
                )
            )
    return replies


def _apply_request(path: Path, name: str, reason: str, dry_run: bool) -> pb.ApplyUseCaseRequest:
    return pb.ApplyUseCaseRequest(
        use_case=name, spec_yaml=path.read_text(encoding="utf-8"), reason=reason, dry_run=dry_run
    )


def _describe(reply: pb.ApplyUseCaseResponse, dry_run: bool) -> str:
    entry = reply.use_case
    what = OUTCOMES.get(reply.outcome, "?")
    head = f"{'would be ' if dry_run else ''}{what:<9} {entry.use_case} v{entry.version}"
    if reply.changes:
        head += ": " + ", ".join(c.field for c in reply.changes)
    if reply.audit_event_id:
        head += f" (audit {reply.audit_event_id})"
    return head


def _entry(entry: pb.UseCaseEntry) -> dict[str, Any]:
    data = to_dict(entry)
    data["state"] = STATES.get(entry.state, "?")
    return data


# ---------------------------------------------------------------- commands


@app.command(help="write a new spec from the template")
def new(name: str, directory: Annotated[Path, typer.Option("--dir")] = DEFAULT_DIR) -> None:
    if not re.match(NAME, name):
        raise CliError(f"usecase: name {name!r} must match {NAME}")
    target = directory / f"{name}.yaml"
    if target.exists():
        raise CliError(f"usecase: {target} already exists: pick another name or --dir")
    text = TEMPLATE.read_text().replace("__NAME__", name)
    parse_usecase(text, str(target))  # the template must always produce a valid spec
    target.write_text(text)
    print(f"wrote {target}; edit it, then: aif usecase validate {target} && aif usecase apply {target}")


@app.command(help="validate spec files (offline)")
def validate(files: list[Path]) -> None:
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
    if failed:
        raise typer.Exit(REFUSED)


@app.command(help="onboard specs into the running factory (or apply them as the next version)")
def apply(
    ctx: typer.Context,
    files: list[Path],
    reason: Annotated[str, typer.Option(help="why, for the audit log")] = "",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show what would change; change nothing")
    ] = False,
    target: TargetOpt = None,
    token: TokenOpt = None,
    json_output: Json = False,
) -> None:
    r = remote(ctx)
    address = r.target("registry", target)

    async def go() -> tuple[int, list[dict[str, Any]]]:
        failed, done = 0, []
        async with r.channel("registry", target=target, token=token) as channel:
            stub = pb_grpc.RegistryServiceStub(channel)
            for path in files:
                try:
                    spec = load_usecase(path)
                    reply = await stub.ApplyUseCase(
                        _apply_request(path, spec.name, reason, dry_run), timeout=30
                    )
                except UseCaseError as exc:
                    print(f"INVALID {exc.message}", file=sys.stderr)
                    failed += 1
                    continue
                except grpc.aio.AioRpcError as exc:
                    print(f"REFUSED {path}: {exc.code().name}: {exc.details()}", file=sys.stderr)
                    if exc.code() not in REFUSED_CODES:
                        raise rpc_error(exc, "registry", address) from None
                    failed += 1
                    continue
                done.append(
                    {"file": str(path), **to_dict(reply), "outcome": OUTCOMES.get(reply.outcome, "?")}
                )
                if not json_output:
                    print(f"{_describe(reply, dry_run)}  ({path})")
        return failed, done

    failed, done = run(go())
    if json_output:
        emit_json(done)
    if failed:
        raise typer.Exit(REFUSED)


@app.command("list", help="the registry's use-case catalogue")
def list_(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="retired use cases too")] = False,
    target: TargetOpt = None,
    token: TokenOpt = None,
    json_output: Json = False,
) -> None:
    r = remote(ctx)

    async def go() -> pb.ListUseCasesResponse:
        async with r.channel("registry", target=target, token=token) as channel:
            return await pb_grpc.RegistryServiceStub(channel).ListUseCases(
                pb.ListUseCasesRequest(include_retired=all_), timeout=30
            )

    reply = run(go())

    def render(c: Console) -> None:
        if not reply.use_cases:
            c.print("no use case in the catalogue: aif usecase apply FILE onboards one")
        for e in reply.use_cases:
            c.print(
                f"{e.use_case:<24} v{e.version:<4} {STATES.get(e.state, '?'):<8} "
                f"{e.updated_at.ToDatetime():%Y-%m-%d %H:%M:%S} by {e.updated_by.subject}"
            )

    out(json_output, [_entry(e) for e in reply.use_cases], render)


async def _get(
    ctx: typer.Context, name: str, version: int, target: str | None, token: str | None
) -> pb.UseCaseEntry:
    async with remote(ctx).channel("registry", target=target, token=token) as channel:
        reply = await pb_grpc.RegistryServiceStub(channel).GetUseCase(
            pb.GetUseCaseRequest(use_case=name, version=version), timeout=30
        )
    return reply.use_case


@app.command(help="one use case's entry and spec")
def show(
    ctx: typer.Context,
    name: str,
    version: Annotated[int, typer.Option(help="an earlier version (default: current)")] = 0,
    target: TargetOpt = None,
    token: TokenOpt = None,
    json_output: Json = False,
) -> None:
    entry = run(_get(ctx, name, version, target, token))

    def render(c: Console) -> None:
        print(
            f"# {entry.use_case} v{entry.version} ({STATES.get(entry.state, '?')}), sha256 "
            f"{entry.spec_sha256}; updated {entry.updated_at.ToDatetime():%Y-%m-%d %H:%M:%S} "
            f"by {entry.updated_by.subject}"
        )
        print(entry.spec_yaml.rstrip())

    out(json_output, _entry(entry), render)


@app.command(help="a use case's raw record contract as JSON Schema (for producers)")
def schema(
    ctx: typer.Context,
    name: str,
    version: Annotated[int, typer.Option(help="an earlier version (default: current)")] = 0,
    target: TargetOpt = None,
    token: TokenOpt = None,
) -> None:
    entry = run(_get(ctx, name, version, target, token))
    try:
        spec = parse_usecase(entry.spec_yaml, f"{entry.use_case} v{entry.version}")
    except UseCaseError as exc:
        raise CliError(
            f"the registry's spec does not parse here: {exc.message}; upgrade aif", REFUSED
        ) from None
    emit_json(json_schema(spec, entry.version))


@app.command(help="retire a use case in the running factory")
def retire(
    ctx: typer.Context,
    name: str,
    reason: Annotated[str, typer.Option(help="why, for the audit log")],
    target: TargetOpt = None,
    token: TokenOpt = None,
    json_output: Json = False,
) -> None:
    async def go() -> pb.RetireUseCaseResponse:
        async with remote(ctx).channel("registry", target=target, token=token) as channel:
            return await pb_grpc.RegistryServiceStub(channel).RetireUseCase(
                pb.RetireUseCaseRequest(use_case=name, reason=reason), timeout=30
            )

    retired = run(go())
    done = "retired" if retired.audit_event_id else "was retired already"
    out(
        json_output,
        {**to_dict(retired), "use_case": _entry(retired.use_case)},
        lambda c: print(f"{retired.use_case.use_case} v{retired.use_case.version} {done}"),
    )
