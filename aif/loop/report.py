"""What the demo prints: timeline, quality table, lineage of one prediction, summary line."""

from __future__ import annotations

import math
from datetime import UTC

from aif.loop.driver import LoopResult
from aifactory.registry.v1 import registry_service_pb2 as reg_pb


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


_STEPS = {
    "model_version.registered": "registered (trained)",
    "model_version.evaluated": "evaluated",
    "alias.promote": "promoted",
    "alias.rollback": "rolled back",
}


def timeline(result: LoopResult) -> str:
    """The driver's observations, merged with the registry's audited steps."""
    entries = list(result.timeline.entries)
    for page in result.audit_events:
        for e in page.audit_events:
            if e.action in _STEPS and e.model.version:
                at = e.time.ToDatetime(tzinfo=UTC).timestamp() - result.timeline.wall_started
                alias = f" to {e.alias}" if e.alias else ""
                entries.append(
                    (at, f"  registry: v{e.model.version} {_STEPS[e.action]}{alias} (by {e.actor.subject})")
                )
    lines = ["timeline (seconds since start)"]
    lines += [f"  {at:7.1f}s  {what}" for at, what in sorted(entries, key=lambda x: x[0])]
    return "\n".join(lines)


def audit_trail(result: LoopResult) -> str:
    lines = [
        "audit log (registry, hash-chained; "
        + ("verified" if result.audit_valid else "NOT VERIFIED")
        + (f"; {result.audit_anchor}" if result.audit_anchor else "")
        + ")"
    ]
    for page in result.audit_events:
        for e in page.audit_events:
            model = f"v{e.model.version}" if e.model.version else ""
            evidence = f" evidence={','.join(e.evidence_ids)}" if e.evidence_ids else ""
            lines.append(
                f"  #{e.sequence:<3} {e.action:<28} {model:<4} {e.alias:<10} by {e.actor.subject}{evidence}"
            )
    return "\n".join(lines)


def quality_table(result: LoopResult) -> str:
    q = result.quality()
    rows = [("phase", "records", "accuracy", "AUC", "model")]
    versions = {
        "before drift": f"v{result.v1}",
        "during drift": f"v{result.v1}" + (f"→v{result.v2}" if result.v2 else ""),
        "after recovery": f"v{result.v2}" if result.v2 else "—",
    }
    for phase, values in q.items():
        rows.append(
            (
                phase,
                f"{int(values.get('n', 0)):,}",
                _fmt(values.get("accuracy")),
                _fmt(values.get("auc")),
                versions[phase],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = [
        "  "
        + "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    out.insert(1, "  " + "  ".join("-" * w for w in widths))
    out.append("")
    out.append(
        f"  detection delay: {result.detected_at_index if result.detected_at_index is not None else '—'} "
        f"records, {_fmt(result.detected_after_s, 1)} s after onset; false alarms before onset: "
        f"{result.false_alarms}"
    )
    out.append(f"  drift onset → new champion serving: {_fmt(result.serving_after_s, 1)} s")
    out.append(f"  quality after recovery / before drift (accuracy): {result.recovered_ratio:.1%}")
    return "\n".join(out)


def lineage(reply: reg_pb.GetLineageResponse | None) -> str:
    if reply is None:
        return "lineage: no prediction of the new champion to trace"
    mv = reply.model_version
    lines = [
        f"lineage of prediction {reply.prediction_id}",
        f"  served by   {mv.ref.model_name} v{mv.ref.version} as {reply.served_alias or 'champion'}",
        f"  trained by  run {mv.run_id} (code {mv.code_version[:12] or 'unknown'}, request "
        f"{mv.training_request_id})",
        f"  caused by   drift report {mv.drift_report_id or '—'}",
        f"  evaluated   report {mv.evaluation_report_id or '—'}",
    ]
    if mv.datasets:
        uris = sorted({d.uri for d in mv.datasets})
        lines.append(
            f"  data        {len(mv.datasets)} versions of the {mv.ref.use_case} raw dataset "
            f"({', '.join(d.version[:12] for d in list(mv.datasets)[:3])}, ...) in {', '.join(uris)}"
        )
    if mv.features:
        names = ", ".join(f"{f.name}@{f.version[:8]}" for f in list(mv.features)[:4])
        lines.append(f"  features    {len(mv.features)}: {names}, ...")
    if reply.HasField("run"):
        lines.append(
            f"  run         seed {reply.run.seed}, {len(reply.run.metrics)} metric points, "
            f"{reply.run.duration_s:.1f}s"
        )
    return "\n".join(lines)


def summary(result: LoopResult) -> str:
    q = result.quality()
    return (
        f"loop {'CLOSED' if result.closed else 'NOT CLOSED'}: accuracy before {_fmt(q['before drift'].get('accuracy'))}"
        f" / during {_fmt(q['during drift'].get('accuracy'))} / after {_fmt(q['after recovery'].get('accuracy'))}"
        f" ({result.recovered_ratio:.0%} recovered); drift detected after "
        f"{result.detected_at_index if result.detected_at_index is not None else '—'} records / "
        f"{_fmt(result.detected_after_s, 1)} s; new champion v{result.v2 or '—'} serving "
        f"{_fmt(result.serving_after_s, 1)} s after onset; false alarms {result.false_alarms}; "
        f"outcomes {result.config.outcome_delay} ({result.outcomes_reported:,} reported); "
        f"v2 caused by {result.v2_drift_report_id or '—'} "
        f"({'a drift report after the onset' if result.causal else 'NOT a drift report after the onset'})"
        + (
            f"; injected {result.orphans_injected} orphan labels (quarantined {result.quarantined}) and "
            f"{result.poisoned_injected} poisoned (dead-lettered {result.poisoned_dead_lettered})"
            if result.orphans_injected or result.poisoned_injected
            else ""
        )
    )
