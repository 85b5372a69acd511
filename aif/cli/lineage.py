"""``aif lineage ID``: where a prediction or a model version came from, as a tree."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer
from rich.tree import Tree

from aif.cli.output import out, to_dict
from aif.cli.remote import remote, run
from aifactory.common.v1 import common_pb2
from aifactory.registry.v1 import registry_service_pb2 as pb
from aifactory.registry.v1 import registry_service_pb2_grpc as pb_grpc

HELP = (
    "the lineage of a prediction (its id) or of a model version (USE_CASE:VERSION or "
    "USE_CASE/MODEL:VERSION), as a tree: version, run, data, features, evaluations, audit trail"
)
_VERSION = re.compile(r"^(?P<uc>[a-z][a-z0-9_]*)(?:/(?P<model>[^:]+))?:v?(?P<version>\d+)$")


def request_for(subject: str) -> pb.GetLineageRequest:
    """``loan_approval:3`` / ``loan_approval/loan_approval:v3`` name a version; anything else
    is a prediction id."""
    match = _VERSION.match(subject)
    if match is None:
        return pb.GetLineageRequest(prediction_id=subject)
    uc = match["uc"]
    return pb.GetLineageRequest(
        model=common_pb2.ModelRef(use_case=uc, model_name=match["model"] or uc, version=int(match["version"]))
    )


def tree(reply: pb.GetLineageResponse) -> Tree:
    v = reply.model_version
    name = f"{v.ref.use_case}/{v.ref.model_name} v{v.ref.version}"
    if reply.prediction_id:
        root = Tree(
            f"prediction {reply.prediction_id} at {reply.predicted_at.ToDatetime():%Y-%m-%d %H:%M:%S}"
            f" ({reply.served_alias or 'served'}{', shadow' if reply.shadow else ''})"
        )
        node = root.add(f"model {name}")
    else:
        root = node = Tree(f"model {name}")
    node.add(f"artifact sha256 {v.artifact_sha256}")
    if v.drift_report_id:
        node.add(f"caused by drift report {v.drift_report_id}")
    run_node = node.add(
        f"run {reply.run.run_id or v.run_id} (code {reply.run.code_version or v.code_version})"
    )
    run_node.add(f"training request {v.training_request_id}")
    if reply.run.seed:
        run_node.add(f"seed {reply.run.seed}")
    data = run_node.add("data")
    for d in reply.run.datasets or v.datasets:
        data.add(f"{d.use_case} {d.version} {d.uri}")
    features = run_node.add(f"features ({len(v.features)})")
    for f in v.features:
        features.add(f"{f.name}" + (f" {f.version}" if getattr(f, "version", "") else ""))
    evaluations = node.add(f"evaluations ({len(reply.evaluations)})")
    for e in reply.evaluations:
        evaluations.add(
            f"{e.report_id}: {'passed' if e.passed else 'failed'}"
            + (f" vs champion v{e.champion.version}" if e.champion.version else "")
        )
    audit = node.add(f"audit trail ({len(reply.audit_events)})")
    for a in reply.audit_events:
        audit.add(
            f"#{a.sequence} {a.time.ToDatetime():%Y-%m-%d %H:%M:%S} {a.action} by {a.actor.subject} {a.reason}"
        )
    return root


def lineage(
    ctx: typer.Context,
    subject: Annotated[str, typer.Argument(metavar="ID", help="a prediction id, or USE_CASE:VERSION")],
    json_output: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    async def go() -> pb.GetLineageResponse:
        async with remote(ctx).channel("registry") as channel:
            return await pb_grpc.RegistryServiceStub(channel).GetLineage(request_for(subject), timeout=30)

    reply = run(go())
    data: dict[str, Any] = to_dict(reply)
    out(json_output, data, lambda c: c.print(tree(reply), markup=False))
