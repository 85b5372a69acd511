"""``aif drift list|show``: the monitor's drift reports."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from aif.cli.output import out, to_dict
from aif.cli.remote import remote, run
from aifactory.monitor.v1 import monitor_service_pb2 as pb
from aifactory.monitor.v1 import monitor_service_pb2_grpc as pb_grpc

app = typer.Typer(help="drift reports of the monitor", no_args_is_help=True)
Json = Annotated[bool, typer.Option("--json", help="print JSON")]


async def _call(ctx: typer.Context, method: str, request: Any) -> Any:
    async with remote(ctx).channel("monitor") as channel:
        return await getattr(pb_grpc.MonitorServiceStub(channel), method)(request, timeout=30)


@app.command("list", help="drift reports, newest first")
def list_(
    ctx: typer.Context,
    use_case: Annotated[str, typer.Option("--use-case", "-u", help="one use case")] = "",
    drifted: Annotated[bool, typer.Option("--drifted", help="only reports where drift was detected")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    json_output: Json = False,
) -> None:
    request = pb.ListDriftReportsRequest(use_case=use_case, drift_only=drifted, page_size=limit)
    reports = list(run(_call(ctx, "ListDriftReports", request)).reports)

    def render(c: Console) -> None:
        if not reports:
            c.print("no drift report" + (f" for {use_case}" if use_case else ""))
            return
        table = Table("report", "model", "drift", "created", "drifted evidence", box=None)
        for r in reports:
            table.add_row(
                r.report_id,
                f"{r.model.model_name} v{r.model.version}",
                "yes" if r.drift_detected else "no",
                f"{r.created_at.ToDatetime():%Y-%m-%d %H:%M:%S}",
                ", ".join(f"{e.feature} {e.statistic}" for e in r.evidence if e.drifted)[:80],
            )
        c.print(table)

    out(json_output, [to_dict(r) for r in reports], render)


@app.command(help="one drift report with all its evidence")
def show(ctx: typer.Context, report_id: str, json_output: Json = False) -> None:
    report = run(_call(ctx, "GetDriftReport", pb.GetDriftReportRequest(report_id=report_id))).report
    data = to_dict(report)

    def render(c: Console) -> None:
        c.print(
            f"{report.report_id}: {report.use_case} {report.model.model_name} v{report.model.version}, "
            f"drift {'detected' if report.drift_detected else 'not detected'}",
            markup=False,
        )
        table = Table("feature", "statistic", "value", "threshold", "drifted", "samples", box=None)
        for e in report.evidence:
            table.add_row(
                e.feature,
                e.statistic,
                f"{e.value:.4g}",
                f"{e.threshold:.4g}",
                "yes" if e.drifted else "",
                str(e.sample_size),
            )
        c.print(table)

    out(json_output, data, render)
