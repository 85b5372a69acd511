"""``aif audit``: check and read the registry's hash-chained audit log.

    aif audit verify [--json]                         exit 0 when the chain holds, 1 at the first
                                                      tampered, missing or re-ordered entry (named)
    aif audit list [--use-case UC] [--after N] [--limit N] [--json]

Through the registry's API (``VerifyAuditChain``, ``ListAuditEvents``: an ``auditor``
token), or, with ``--database-url`` (or ``AIF_REGISTRY_DATABASE_URL``), straight from
its database: an auditor who does not take the server's word reads the rows and
recomputes the chain here. The database is only read: the schema is not migrated.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from aif.cli.output import REFUSED, CliError, out, to_dict
from aif.cli.remote import remote, run
from aifactory.registry.v1 import registry_service_pb2 as pb
from aifactory.registry.v1 import registry_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from services.registry.store import RegistryStore

app = typer.Typer(help="verify or list the registry's hash-chained audit log", no_args_is_help=True)
Json = Annotated[bool, typer.Option("--json", help="print JSON")]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        help="read the registry's database itself (default: $AIF_REGISTRY_DATABASE_URL; else the API)"
    ),
]


def _database_url(given: str | None) -> str | None:
    return given or os.environ.get("AIF_REGISTRY_DATABASE_URL") or None


def _open(url: str) -> RegistryStore:
    from sqlalchemy.engine import make_url

    from libs.errors import AifError
    from services.registry.store import open_store

    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
            raise CliError(f"no registry database at {parsed.database}: check --database-url")
        return open_store(url, migrate=False)
    except AifError as exc:
        raise CliError(f"audit: {exc.message}") from None


async def _registry(ctx: typer.Context, method: str, request: Any) -> Any:
    async with remote(ctx).channel("registry") as channel:
        return await getattr(pb_grpc.RegistryServiceStub(channel), method)(request, timeout=60)


@app.command(help="recompute the hash chain; exit 1 naming the first tampered entry")
def verify(ctx: typer.Context, database_url: DatabaseUrl = None, json_output: Json = False) -> None:
    url = _database_url(database_url)
    anchored = ""
    if url:
        from services.registry.checkpoints import verify_anchored

        store = _open(url)
        try:
            # The chain, then the registry's signed checkpoints (kept outside the database).
            report, anchored = verify_anchored(store)
        except Exception as exc:  # noqa: BLE001 - a missing table or a dead server: say so, exit 2
            raise CliError(f"cannot read the audit log: {type(exc).__name__}: {exc}") from None
        finally:
            store.close()
        data = {
            "valid": report.valid,
            "events_checked": report.checked,
            "first_invalid_sequence": report.first_invalid_sequence or 0,
            "first_invalid_event_id": report.first_invalid_event_id or "",
            "message": report.message,
            "head_hash": report.head_hash,
        }
    else:
        data = to_dict(run(_registry(ctx, "VerifyAuditChain", pb.VerifyAuditChainRequest())))

    def render(c: Any) -> None:
        if data["valid"]:
            print(f"audit chain OK: {data['events_checked']} entries, head {data['head_hash']}")
            if anchored:
                print(f"checkpoints: {anchored}")
            return
        event = data.get("first_invalid_event_id")
        print(
            f"audit chain BROKEN at sequence {data['first_invalid_sequence']}"
            f"{f' (event id {event})' if event else ''}: "
            f"{data['message']}; {data['events_checked']} entries before it verified"
        )

    out(json_output, data, render)
    if not data["valid"]:
        raise typer.Exit(REFUSED)


@app.command("list", help="audit entries, oldest first")
def list_(
    ctx: typer.Context,
    use_case: Annotated[str, typer.Option(help="one use case")] = "",
    after: Annotated[int, typer.Option(help="only entries after this sequence")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    database_url: DatabaseUrl = None,
    json_output: Json = False,
) -> None:
    url = _database_url(database_url)
    rows: list[dict[str, Any]]
    if url:
        store = _open(url)
        try:
            with store.read() as tx:
                records = tx.list_audit(use_case, after_sequence=after, limit=limit)
        except Exception as exc:  # noqa: BLE001 - a missing table or a dead server: say so, exit 2
            raise CliError(f"cannot read the audit log: {type(exc).__name__}: {exc}") from None
        finally:
            store.close()
        rows = [
            {
                "sequence": r.sequence,
                "time": datetime.fromtimestamp(r.time_us / 1e6, UTC).isoformat(timespec="seconds"),
                "actor": r.actor.subject,
                "action": r.action,
                "use_case": r.use_case,
                "model_name": r.model_name,
                "version": r.version,
                "alias": r.alias,
                "reason": r.reason,
                "evidence_ids": list(r.evidence_ids),
            }
            for r in records
        ]
    else:
        request = pb.ListAuditEventsRequest(use_case=use_case, after_sequence=after, page_size=limit)
        reply = run(_registry(ctx, "ListAuditEvents", request))
        rows = [
            {
                "sequence": e.sequence,
                "time": e.time.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds"),
                "actor": e.actor.subject,
                "action": e.action,
                "use_case": e.use_case,
                "model_name": e.model.model_name,
                "version": e.model.version,
                "alias": e.alias,
                "reason": e.reason,
                "evidence_ids": list(e.evidence_ids),
                "hash": e.hash,
            }
            for e in reply.audit_events
        ]

    def render(c: Any) -> None:
        for r in rows:
            target = "/".join(
                p for p in (r["use_case"], r["model_name"], f"v{r['version']}" if r["version"] else "") if p
            )
            print(
                f"{r['sequence']:>6} {r['time']} {r['actor']:<20} {r['action']:<26} {target}"
                f"{' alias=' + r['alias'] if r['alias'] else ''} {r['reason']} "
                f"{json.dumps(r['evidence_ids']) if r['evidence_ids'] else ''}".rstrip()
            )

    out(json_output, rows, render)
