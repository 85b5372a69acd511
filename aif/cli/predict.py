"""``aif predict USE_CASE --entity ID [--feature NAME=VALUE ...]``: one decision from the gateway."""

from __future__ import annotations

from typing import Annotated

import typer

from aif.cli.output import CliError, out, to_dict
from aif.cli.remote import remote, run
from aifactory.common.v1 import common_pb2
from aifactory.gateway.v1 import gateway_service_pb2 as pb
from aifactory.gateway.v1 import gateway_service_pb2_grpc as pb_grpc

HELP = (
    "ask the gateway for a prediction: by entity id (features read online) and/or with "
    "inline features (--feature NAME=VALUE, repeatable)"
)


def value(text: str) -> common_pb2.Value:
    """``3`` → int, ``3.5`` → float, ``true``/``false`` → bool, anything else → string."""
    if text.lower() in ("true", "false"):
        return common_pb2.Value(bool_value=text.lower() == "true")
    try:
        return common_pb2.Value(int64_value=int(text))
    except ValueError:
        pass
    try:
        return common_pb2.Value(double_value=float(text))
    except ValueError:
        return common_pb2.Value(string_value=text)


def _scalar(v: common_pb2.Value) -> object:
    kind = v.WhichOneof("kind")
    return None if kind in (None, "null_value") else getattr(v, kind)


def predict(
    ctx: typer.Context,
    use_case: str,
    entity: Annotated[str, typer.Option("--entity", "-e", help="entity id (features read online)")] = "",
    feature: Annotated[list[str] | None, typer.Option("--feature", "-f", metavar="NAME=VALUE")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    features = {}
    for item in feature or []:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise CliError(f"--feature {item!r} is not NAME=VALUE")
        features[name] = value(text)
    if not entity and not features:
        raise CliError("give --entity ID or --feature NAME=VALUE (or both)")

    async def go() -> pb.PredictResponse:
        async with remote(ctx).channel("gateway") as channel:
            return await pb_grpc.GatewayServiceStub(channel).Predict(
                pb.PredictRequest(use_case=use_case, entity_id=entity, features=features), timeout=30
            )

    p = run(go()).prediction
    data = to_dict(p)
    outputs = {k: _scalar(v) for k, v in sorted(p.outputs.items())}
    out(
        json_output,
        data,
        lambda c: c.print(
            f"{p.prediction_id}: {_scalar(p.output)} from {p.model.use_case}/{p.model.model_name} v{p.model.version}"
            + (f" {outputs}" if outputs else "")
            + f"\n(aif lineage {p.prediction_id})",
            markup=False,
        ),
    )
