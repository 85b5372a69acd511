"""the factory at a glance: each service's health, consumer lag, the models the gateway has loaded, each use case's champion (exit 1 when a service is not SERVING)"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import grpc
import typer
from aiokafka.admin import AIOKafkaAdminClient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.table import Table

from aif.cli.config import SERVICES
from aif.cli.output import REFUSED, CliError, enum_name, out
from aif.cli.remote import Remote, remote, run
from aifactory.registry.v1 import registry_service_pb2 as reg_pb
from aifactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from libs.bus.lag import ConsumerLag

TIMEOUT_S = 5.0


async def _health(r: Remote, name: str) -> dict[str, str]:
    target = r.target(name)
    try:
        async with r.channel(name) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S
            )
        state = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    except CliError:
        state = "UNREACHABLE"
    return {"service": name, "target": target, "status": state}


async def _champions(r: Remote) -> list[dict[str, Any]]:
    async with r.channel("registry") as channel:
        stub = reg_grpc.RegistryServiceStub(channel)
        entries = (await stub.ListUseCases(reg_pb.ListUseCasesRequest(), timeout=TIMEOUT_S)).use_cases
        found = []
        for e in entries:
            versions = (
                await stub.ListModelVersions(
                    reg_pb.ListModelVersionsRequest(use_case=e.use_case), timeout=TIMEOUT_S
                )
            ).model_versions
            champion = next((v for v in versions if "champion" in v.aliases), None)
            found.append(
                {
                    "use_case": e.use_case,
                    "spec_version": e.version,
                    "versions": len(versions),
                    "champion": None
                    if champion is None
                    else {
                        "model_name": champion.ref.model_name,
                        "version": champion.ref.version,
                        "status": enum_name(
                            reg_pb.ModelVersionStatus.Name(champion.status), "MODEL_VERSION_STATUS_"
                        ),
                    },
                }
            )
    return found


async def _loaded(r: Remote, use_cases: list[str]) -> list[dict[str, Any]]:
    """Which use cases the gateway serves now, and the versions loaded for each (the OIP
    model of a use case is named after it: ``ModelReady`` and ``ModelMetadata``)."""
    # tritonclient's generated OIP stubs: imported here, `pip install -e .` alone has no tritonclient.
    from tritonclient.grpc import service_pb2 as oip_pb
    from tritonclient.grpc import service_pb2_grpc as oip_grpc

    found = []
    async with r.channel("gateway-oip") as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        for name in use_cases:
            try:
                ready = (await stub.ModelReady(oip_pb.ModelReadyRequest(name=name), timeout=TIMEOUT_S)).ready
                versions = (
                    list(
                        (
                            await stub.ModelMetadata(
                                oip_pb.ModelMetadataRequest(name=name), timeout=TIMEOUT_S
                            )
                        ).versions
                    )
                    if ready
                    else []
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:  # NOT_FOUND: not served (yet)
                    raise
                ready, versions = False, []
            found.append({"model": name, "ready": ready, "versions": versions})
    return found


async def _lag(r: Remote) -> list[dict[str, Any]]:
    bootstrap, prefix, kafka = r.settings["kafka"], r.settings.get("group-prefix", ""), r.kafka()
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(TIMEOUT_S * 1000), **kafka
    )
    try:
        await asyncio.wait_for(admin.start(), TIMEOUT_S)
        groups = sorted(g[0] for g in await admin.list_consumer_groups() if str(g[0]).startswith(prefix))
    except (TimeoutError, OSError, Exception) as exc:  # noqa: BLE001 - any Kafka failure: say so in one line
        raise CliError(f"Kafka at {bootstrap}: {type(exc).__name__}: {exc}") from None
    finally:
        await admin.close()

    # Each measure opens two Kafka clients: a few at a time on a broker with many groups.
    gate = asyncio.Semaphore(8)

    async def one(group: str) -> list[dict[str, Any]]:
        lag = ConsumerLag(bootstrap, group, kafka_options=kafka)
        async with gate:
            try:
                by_topic = await asyncio.wait_for(lag.refresh(), TIMEOUT_S)
            finally:
                await lag.close()
        return [{"group": group, "topic": t, "lag": n} for t, n in sorted(by_topic.items())]

    rows = await asyncio.gather(*(one(g) for g in groups))
    return [row for group in rows for row in group]


async def _section(coro: Any) -> Any:
    """A section's data, or its one-line error: one part down never hides the others."""
    try:
        return await coro
    except CliError as exc:
        return {"error": exc.message}
    except grpc.aio.AioRpcError as exc:
        return {"error": f"{exc.code().name}: {exc.details()}"}


def status(
    ctx: typer.Context, json_output: Annotated[bool, typer.Option("--json", help="print JSON")] = False
) -> None:
    r = remote(ctx)

    async def go() -> dict[str, Any]:
        health = await asyncio.gather(*(_health(r, name) for name in SERVICES))
        champions, lag = await asyncio.gather(_section(_champions(r)), _section(_lag(r)))
        names = [u["use_case"] for u in champions] if isinstance(champions, list) else []
        loaded = await _section(_loaded(r, names))
        return {
            "context": r.context or "(defaults)",
            "services": list(health),
            "usecases": champions,
            "models_loaded": loaded,
            "consumer_lag": lag,
        }

    data = run(go())
    out(json_output, data, lambda c: _render(c, data))
    if any(s["status"] != "SERVING" for s in data["services"]):
        raise typer.Exit(REFUSED)


def _render(c: Console, data: dict[str, Any]) -> None:
    table = Table("service", "target", "health", title=f"context {data['context']}", title_justify="left")
    for s in data["services"]:
        colour = "green" if s["status"] == "SERVING" else "red"
        table.add_row(s["service"], s["target"], f"[{colour}]{s['status']}[/]")
    c.print(table)
    for title, section, columns in (
        ("use cases", data["usecases"], ("use_case", "spec_version", "versions", "champion")),
        ("models loaded in the gateway", data["models_loaded"], ("model", "ready", "versions")),
        ("consumer lag", data["consumer_lag"], ("group", "topic", "lag")),
    ):
        if isinstance(section, dict):
            c.print(f"{title}: [red]{section['error']}[/]")
            continue
        t = Table(*columns, title=title, title_justify="left")
        for row in section:
            t.add_row(*(_cell(row[k]) for k in columns))
        c.print(t if section else f"{title}: none")


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return f"{value['model_name']} v{value['version']} ({value['status']})"
    return "none" if value is None else str(value)
