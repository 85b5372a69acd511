"""The append-only, hash-chained audit log: hashing and verification.

Each entry's hash is ``sha256(prev_hash + canonical_json(entry))`` where the JSON holds
every field of the entry except the two hashes, with sorted keys and no spaces, so any
change to a stored field, a removed or re-ordered entry, or a truncated tail breaks the
chain. The first entry's ``prev_hash`` is :data:`GENESIS`. The store keeps the head
(last sequence and hash) in a separate row, updated in the same transaction as each
append, so a deleted last entry is found too.

The store appends (it owns the transaction that serialises writers); this module
only computes and checks, so it is the same for every backend.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from services.registry.domain import AuditRecord, ChainReport

GENESIS = "0" * 64


def canonical_json(data: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 kept as is."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def hashed_fields(record: AuditRecord) -> dict[str, Any]:
    """The fields covered by the hash (all but ``prev_hash`` and ``hash``)."""
    return {
        "event_id": record.event_id,
        "sequence": record.sequence,
        "time_us": record.time_us,
        "action": record.action,
        "actor": {"subject": record.actor.subject, "roles": sorted(record.actor.roles)},
        "use_case": record.use_case,
        "model_name": record.model_name,
        "version": record.version,
        "alias": record.alias,
        "reason": record.reason,
        "evidence_ids": list(record.evidence_ids),
        "details": record.details,
    }


def entry_hash(prev_hash: str, record: AuditRecord) -> str:
    return hashlib.sha256((prev_hash + canonical_json(hashed_fields(record))).encode()).hexdigest()


def verify_chain(records: Iterable[AuditRecord], head: tuple[int, str] | None) -> ChainReport:
    """Walk ``records`` (ordered by sequence) and report the first broken link.

    ``head`` is the stored (last sequence, last hash), or None when the log is empty.
    """
    prev_hash = GENESIS
    expected_seq = 1
    checked = 0
    for rec in records:
        problem = ""
        if rec.sequence != expected_seq:
            problem = f"sequence {rec.sequence} where {expected_seq} was expected (entry missing or moved)"
        elif rec.prev_hash != prev_hash:
            problem = "prev_hash does not match the previous entry's hash"
        elif entry_hash(prev_hash, rec) != rec.hash:
            problem = "content does not match its hash (entry was modified)"
        if problem:
            return ChainReport(
                False,
                checked,
                prev_hash,
                rec.sequence,
                rec.event_id,
                f"entry {rec.sequence} (event id {rec.event_id}): {problem}",
            )
        prev_hash = rec.hash
        expected_seq += 1
        checked += 1
    last_seq = expected_seq - 1
    head_seq, head_hash = head or (0, GENESIS)
    if (head_seq, head_hash) != (last_seq, prev_hash):
        return ChainReport(
            False,
            checked,
            prev_hash,
            last_seq + 1,
            "",
            f"log ends at entry {last_seq} but its head says {head_seq}: entries were removed from the end",
        )
    return ChainReport(True, checked, prev_hash, message=f"{checked} entries verified")
