"""``aif ingest FILE --use-case UC``: push a file's records through ingestion's gRPC API."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from aif.cli.output import REFUSED, CliError, err_console, out, to_dict
from aif.cli.remote import remote, run
from aifactory.ingestion.v1 import ingestion_service_pb2 as pb
from aifactory.ingestion.v1 import ingestion_service_pb2_grpc as pb_grpc

HELP = (
    "push the records of a CSV, JSONL or parquet file through ingestion's gRPC API, with a "
    "progress bar and a summary of the dead letters (exit 1 when any record was rejected)"
)
FORMATS = ("csv", "jsonl", "parquet")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _count(path: Path, fmt: str) -> int | None:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open("rb") as f:
        lines = sum(1 for line in f if line.strip())
    return lines - 1 if fmt == "csv" else lines


def records(path: Path, fmt: str) -> Iterator[str]:
    """Each record of the file as the JSON text a producer would send.

    CSV cells stay text (ingestion reads "3" as an int field's 3, as a producer's JSON
    may say it), an empty cell is a missing value; JSONL lines are sent as they are.
    """
    if fmt == "jsonl":
        with path.open(encoding="utf-8") as f:
            yield from (line.strip() for line in f if line.strip())
    elif fmt == "csv":
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                yield json.dumps({k: v for k, v in row.items() if k and v not in ("", None)})
    else:
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=1000):
            for row in batch.to_pylist():
                yield json.dumps({k: v for k, v in row.items() if v is not None}, default=_json_default)


def _format(path: Path, given: str | None) -> str:
    fmt = (given or path.suffix.lstrip(".")).lower()
    fmt = {"json": "jsonl", "ndjson": "jsonl", "pq": "parquet"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise CliError(f"cannot tell the format of {path}: give --format {'|'.join(FORMATS)}")
    return fmt


def _batches(items: Iterator[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def ingest(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    use_case: Annotated[str, typer.Option("--use-case", "-u", help="the use case the records belong to")],
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv, jsonl or parquet (default: the file's suffix)")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch", min=1, max=10_000, help="records per call")] = 500,
    show: Annotated[int, typer.Option(help="rejected records to list (0: none)")] = 10,
    json_output: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    r = remote(ctx)
    fmt = _format(file, fmt)
    total = _count(file, fmt)
    # A retried file yields the same record ids (ingestion derives them from the request
    # id), so running it again does not double what was already accepted.
    with file.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()[:16]
    accepted = rejected = 0
    reasons: Counter[str] = Counter()
    examples: list[dict[str, Any]] = []
    dataset: dict[str, Any] = {}

    async def go() -> None:
        nonlocal accepted, rejected, dataset
        progress = Progress(
            TextColumn(f"{file.name} → {use_case}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rejected]} rejected"),
            TimeRemainingColumn(),
            console=err_console(),
            disable=json_output,
        )
        with progress:
            task = progress.add_task("ingest", total=total, rejected=0)
            async with r.channel("ingestion") as channel:
                stub = pb_grpc.IngestionServiceStub(channel)
                offset = 0
                for n, batch in enumerate(_batches(records(file, fmt), batch_size)):
                    reply = await stub.Ingest(
                        pb.IngestRequest(
                            use_case=use_case,
                            items=[pb.IngestItem(json=item) for item in batch],
                            request_id=f"cli:{digest}:{n}",
                        ),
                        timeout=60,
                    )
                    accepted += reply.accepted_count
                    rejected += reply.rejected_count
                    if reply.HasField("dataset"):
                        dataset = to_dict(reply.dataset)
                    for result in reply.results:
                        if result.accepted:
                            continue
                        for v in result.violations:
                            reasons[f"{v.field or '(record)'}: {v.code}"] += 1
                        if len(examples) < show:
                            examples.append(
                                {
                                    "line": offset + result.index + 1,
                                    "violations": [
                                        f"{v.field or '(record)'} {v.code}: {v.message}"
                                        for v in result.violations
                                    ],
                                }
                            )
                    offset += len(batch)
                    progress.update(task, advance=len(batch), rejected=rejected)

    run(go())
    data = {
        "file": str(file),
        "use_case": use_case,
        "records": accepted + rejected,
        "accepted": accepted,
        "rejected": rejected,
        "dead_letters": dict(reasons.most_common()),
        "examples": examples,
        "dataset": dataset,
    }
    out(json_output, data, lambda c: _render(c, data))
    if rejected:
        raise typer.Exit(REFUSED)


def _render(c: Console, data: dict[str, Any]) -> None:
    version = data["dataset"].get("version", "")
    c.print(
        f"{data['records']:,} records: {data['accepted']:,} accepted, {data['rejected']:,} dead-lettered"
        + (f"; raw dataset version {version}" if version else "")
    )
    if data["dead_letters"]:
        table = Table(
            "field: violation",
            "records",
            title="dead letters (aif dlq list shows them)",
            title_justify="left",
        )
        for reason, n in data["dead_letters"].items():
            table.add_row(reason, f"{n:,}")
        c.print(table)
        for e in data["examples"]:
            c.print(f"  record {e['line']}: {'; '.join(e['violations'])}", markup=False)
