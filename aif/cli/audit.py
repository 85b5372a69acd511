"""``aif audit``: check and read the registry's hash-chained audit log, straight from its database.

    aif audit verify [--database-url URL]     exit 0 when the chain holds, 1 at the first
                                              tampered, missing or re-ordered entry (named)
    aif audit list [--use-case UC] [--limit N] [--database-url URL]

The database URL defaults to the registry's setting (``AIF_REGISTRY_DATABASE_URL``).
Reads only: the schema is not migrated.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``audit`` to an argparse sub-parser collection (``aif``'s)."""
    audit = sub.add_parser("audit", help="verify or list the registry's hash-chained audit log")
    commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = commands.add_parser("verify", help="recompute the hash chain; exit 1 naming a tampered entry")
    verify.add_argument("--database-url", help="registry database (default: AIF_REGISTRY_DATABASE_URL)")
    show = commands.add_parser("list", help="print audit entries, oldest first")
    show.add_argument("--database-url", help="registry database (default: AIF_REGISTRY_DATABASE_URL)")
    show.add_argument("--use-case", default="")
    show.add_argument("--after", type=int, default=0, help="only entries after this sequence")
    show.add_argument("--limit", type=int, default=50)


def _database_url(given: str | None) -> str:
    if given:
        return given
    from libs.settings import load_settings
    from services.registry.settings import RegistrySettings

    return load_settings(RegistrySettings).database_url


def run(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from libs.errors import AifError
    from services.registry.audit import verify_chain
    from services.registry.store import open_store

    try:
        url = _database_url(args.database_url)
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
            print(f"aif audit: no registry database at {parsed.database}", file=sys.stderr)
            return 2
        store = open_store(url, migrate=False)
    except AifError as exc:
        print(f"aif audit: {exc.message}", file=sys.stderr)
        return 2
    try:
        if args.audit_command == "verify":
            report = verify_chain(store.audit_chain(), store.audit_head())
            if report.valid:
                print(f"audit chain OK: {report.checked} entries, head {report.head_hash}")
                return 0
            print(
                f"audit chain BROKEN at sequence {report.first_invalid_sequence}"
                f"{f' (event id {report.first_invalid_event_id})' if report.first_invalid_event_id else ''}: "
                f"{report.message}; {report.checked} entries before it verified"
            )
            return 1
        with store.read() as tx:
            records = tx.list_audit(args.use_case, after_sequence=args.after, limit=args.limit)
        for r in records:
            when = datetime.fromtimestamp(r.time_us / 1e6, UTC).isoformat(timespec="seconds")
            target = "/".join(
                p for p in (r.use_case, r.model_name, f"v{r.version}" if r.version else "") if p
            )
            print(
                f"{r.sequence:>6} {when} {r.actor.subject:<20} {r.action:<26} {target}"
                f"{' alias=' + r.alias if r.alias else ''} {r.reason} "
                f"{json.dumps(list(r.evidence_ids)) if r.evidence_ids else ''}".rstrip()
            )
        return 0
    except Exception as exc:  # noqa: BLE001 - a missing table or a dead server: say so, exit 2
        print(f"aif audit: cannot read the audit log: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
