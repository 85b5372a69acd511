"""``aif models list|show|approve|promote|rollback``: the registry's versions and aliases."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from aif.cli.output import enum_name, out, to_dict
from aif.cli.remote import remote, run
from aifactory.common.v1 import common_pb2
from aifactory.registry.v1 import registry_service_pb2 as pb
from aifactory.registry.v1 import registry_service_pb2_grpc as pb_grpc

app = typer.Typer(help="model versions: list, show, approve, promote, roll back", no_args_is_help=True)
Json = Annotated[bool, typer.Option("--json", help="print JSON")]
Model = Annotated[str, typer.Option("--model", help="model name (default: the use case's name)")]
Reason = Annotated[str, typer.Option(help="why, for the audit log")]
STATUS_PREFIX = "MODEL_VERSION_STATUS_"


def _version(v: pb.ModelVersion) -> dict[str, Any]:
    data = to_dict(v)
    data["status"] = enum_name(data["status"], STATUS_PREFIX)
    return data


async def _call(ctx: typer.Context, method: str, request: Any) -> Any:
    async with remote(ctx).channel("registry") as channel:
        return await getattr(pb_grpc.RegistryServiceStub(channel), method)(request, timeout=30)


def _metrics(v: pb.ModelVersion) -> str:
    final = {m.name: m.value for m in v.metrics if m.step == 0}
    return ", ".join(f"{k}={final[k]:.4g}" for k in sorted(final)[:4])


@app.command("list", help="versions of a use case's models, newest first")
def list_(
    ctx: typer.Context,
    use_case: str,
    model: Annotated[str, typer.Option("--model", help="one model (default: all of the use case)")] = "",
    json_output: Json = False,
) -> None:
    reply = run(
        _call(
            ctx,
            "ListModelVersions",
            pb.ListModelVersionsRequest(use_case=use_case, model_name=model, page_size=200),
        )
    )
    versions = list(reply.model_versions)

    def render(c: Console) -> None:
        if not versions:
            c.print(f"no version of {use_case} yet: aif train {use_case}")
            return
        table = Table("model", "version", "status", "aliases", "created", "metrics", box=None)
        for v in versions:
            table.add_row(
                v.ref.model_name,
                f"v{v.ref.version}",
                enum_name(pb.ModelVersionStatus.Name(v.status), STATUS_PREFIX),
                ",".join(v.aliases),
                f"{v.created_at.ToDatetime():%Y-%m-%d %H:%M:%S}",
                _metrics(v),
            )
        c.print(table)

    out(json_output, [_version(v) for v in versions], render)


@app.command(help="one version: status, aliases, run, data, metrics, signature")
def show(
    ctx: typer.Context, use_case: str, version: int, model: Model = "", json_output: Json = False
) -> None:
    ref = common_pb2.ModelRef(use_case=use_case, model_name=model or use_case, version=version)
    v = run(_call(ctx, "GetModelVersion", pb.GetModelVersionRequest(ref=ref))).model_version
    data = _version(v)

    def render(c: Console) -> None:
        c.print(f"{v.ref.use_case}/{v.ref.model_name} v{v.ref.version}: {data['status']}", markup=False)
        for key in (
            "aliases",
            "run_id",
            "training_request_id",
            "drift_report_id",
            "code_version",
            "artifact_sha256",
        ):
            if data.get(key):
                c.print(f"  {key:<20} {data[key]}", markup=False)
        c.print(f"  {'datasets':<20} {', '.join(d.version for d in v.datasets)}", markup=False)
        c.print(f"  {'metrics':<20} {_metrics(v)}", markup=False)
        c.print(f"  {'inputs':<20} {', '.join(v.signature.input_names)}", markup=False)

    out(json_output, data, render)


@app.command(help="approve (or --reject) a version waiting for approval")
def approve(
    ctx: typer.Context,
    use_case: str,
    version: int,
    model: Model = "",
    reject: Annotated[bool, typer.Option("--reject", help="turn it down instead")] = False,
    comment: Annotated[str, typer.Option(help="why, for the audit log")] = "",
    json_output: Json = False,
) -> None:
    ref = common_pb2.ModelRef(use_case=use_case, model_name=model or use_case, version=version)
    decision = pb.APPROVAL_DECISION_REJECT if reject else pb.APPROVAL_DECISION_APPROVE
    reply = run(
        _call(
            ctx,
            "ApproveModelVersion",
            pb.ApproveModelVersionRequest(ref=ref, decision=decision, comment=comment),
        )
    )
    data = {**to_dict(reply), "model_version": _version(reply.model_version)}
    out(
        json_output,
        data,
        lambda c: c.print(
            f"{use_case} v{version}: {data['model_version']['status']} (audit {reply.audit_event_id})",
            markup=False,
        ),
    )


def _alias_moved(
    json_output: bool, use_case: str, alias: str, reply: Any, previous_or: str | None = None
) -> None:
    """What promote and rollback print: the alias's move and its audit entry (``previous_or``
    stands for an alias that pointed nowhere before)."""
    previous = reply.previous_version if previous_or is None else reply.previous_version or previous_or
    out(
        json_output,
        to_dict(reply),
        lambda c: c.print(
            f"{use_case} {alias}: v{previous} → v{reply.alias.version} (audit {reply.audit_event_id})",
            markup=False,
        ),
    )


@app.command(help="point an alias (default: champion) at a version")
def promote(
    ctx: typer.Context,
    use_case: str,
    version: int,
    model: Model = "",
    alias: Annotated[str, typer.Option(help="champion, challenger, ...")] = "champion",
    reason: Reason = "",
    json_output: Json = False,
) -> None:
    request = pb.SetAliasRequest(
        use_case=use_case,
        model_name=model or use_case,
        alias=alias,
        version=version,
        reason=reason or "aif models promote",
    )
    _alias_moved(json_output, use_case, alias, run(_call(ctx, "SetAlias", request)), previous_or="-")


@app.command(help="move an alias (default: champion) back to the previous version, or --to VERSION")
def rollback(
    ctx: typer.Context,
    use_case: str,
    model: Model = "",
    alias: Annotated[str, typer.Option(help="the alias to move back")] = "champion",
    to: Annotated[int, typer.Option("--to", help="the version (default: the one 'previous' points at)")] = 0,
    reason: Reason = "",
    json_output: Json = False,
) -> None:
    request = pb.RollbackRequest(
        use_case=use_case,
        model_name=model or use_case,
        alias=alias,
        to_version=to,
        reason=reason or "aif models rollback",
    )
    _alias_moved(json_output, use_case, alias, run(_call(ctx, "Rollback", request)))
