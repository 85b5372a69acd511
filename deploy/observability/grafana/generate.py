"""Writes the Grafana dashboards of the factory (dashboards/*.json) from the panels below.

``python deploy/observability/grafana/generate.py`` after changing a panel; the JSON files
are what Grafana loads (provisioning/dashboards.yml) and what the telemetry test queries
(every panel's expressions against a real Prometheus scraping a running stack).

Counters of rare events (drift alarms, failed jobs, dead letters) end in ``or vector(0)``:
the panel then shows 0, not "No data", while nothing happened.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
# (title, unit, [(expr, legend)])
Panel = tuple[str, str, list[tuple[str, str]]]

DASHBOARDS: dict[str, tuple[str, list[Panel]]] = {
    "aif-data-health": (
        "AI Factory / Data health",
        [
            (
                "Records ingested per second, by outcome",
                "ops",
                [("sum by (outcome) (rate(aif_ingestion_records_total[5m]))", "{{outcome}}")],
            ),
            (
                "Rejected records per second, by violation",
                "ops",
                [("sum by (code) (rate(aif_ingestion_rejections_total[5m])) or vector(0)", "{{code}}")],
            ),
            (
                "Field null rate (last quality window)",
                "percentunit",
                [("max by (use_case, field) (aif_ingestion_field_null_rate)", "{{use_case}} {{field}}")],
            ),
            (
                "Field out-of-range rate (last quality window)",
                "percentunit",
                [
                    (
                        "max by (use_case, field) (aif_ingestion_field_out_of_range_rate)",
                        "{{use_case}} {{field}}",
                    )
                ],
            ),
            (
                "Dead letters per second, by service",
                "ops",
                [("aif:dead_letters:rate5m or vector(0)", "{{job}}")],
            ),
            (
                "Consumer lag, by group and topic",
                "short",
                [("aif:consumer_lag:sum", "{{consumer_group}} {{topic}}")],
            ),
            (
                "Feature store: records applied per second",
                "ops",
                [("sum(rate(aif_featurestore_records_total[5m]))", "records")],
            ),
            (
                "Feature store: micro-batch write p99",
                "s",
                [
                    (
                        "histogram_quantile(0.99, sum by (le) (rate(aif_featurestore_batch_write_duration_seconds_bucket[5m])))",
                        "p99",
                    )
                ],
            ),
        ],
    ),
    "aif-loop": (
        "AI Factory / The loop",
        [
            (
                "Drift alarms and rollbacks (last hour)",
                "short",
                [("aif:monitor_alarms:increase1h or vector(0)", "{{use_case}} {{kind}}")],
            ),
            (
                "Training jobs by outcome (last hour)",
                "short",
                [("aif:trainer_jobs:increase1h or vector(0)", "{{use_case}} {{outcome}}")],
            ),
            (
                "Training jobs given up (last hour)",
                "short",
                [
                    (
                        "sum by (use_case, code) (increase(aif_trainer_jobs_gave_up_total[1h])) or vector(0)",
                        "{{use_case}} {{code}}",
                    )
                ],
            ),
            (
                "Training duration p50",
                "s",
                [
                    (
                        "histogram_quantile(0.5, sum by (le) (rate(aif_trainer_training_duration_seconds_bucket[1h])))"
                        " or vector(0)",
                        "p50",
                    )
                ],
            ),
            (
                "Alias changes published (last hour)",
                "short",
                [
                    (
                        "sum(increase(aif_registry_alias_changed_published_total[1h])) or vector(0)",
                        "alias changes",
                    )
                ],
            ),
            (
                "Outcomes joined to their prediction per second",
                "ops",
                [("sum by (use_case) (rate(aif_monitor_join_joined_total[5m]))", "{{use_case}}")],
            ),
        ],
    ),
    "aif-serving": (
        "AI Factory / Serving",
        [
            (
                "Gateway OIP latency (ModelInfer)",
                "s",
                [
                    ("aif:gateway_oip_latency_seconds:p50_5m", "p50"),
                    ("aif:gateway_oip_latency_seconds:p99_5m", "p99"),
                ],
            ),
            (
                "Gateway business API latency p99 (Predict)",
                "s",
                [("aif:gateway_predict_latency_seconds:p99_5m", "p99")],
            ),
            (
                "Gateway requests per second",
                "ops",
                [
                    (
                        'sum by (rpc_grpc_status_code) (aif:rpc_requests:rate5m{job="gateway"})',
                        "business {{rpc_grpc_status_code}}",
                    ),
                    ("sum by (status) (rate(aif_gateway_oip_requests_total[5m]))", "OIP {{status}}"),
                ],
            ),
            (
                "Triton calls per second",
                "ops",
                [
                    ("sum(rate(aif_gateway_triton_calls_total[5m]))", "calls"),
                    ("sum(rate(aif_gateway_triton_coalesced_rows_total[5m]))", "coalesced rows"),
                ],
            ),
            ("Triton up", "short", [('up{job="triton"}', "{{instance}}")]),
            (
                "Prediction log: logged and dropped per second",
                "ops",
                [
                    ("sum(rate(aif_gateway_predictions_logged_total[5m]))", "logged"),
                    ("sum(rate(aif_gateway_predictions_dropped_total[5m])) or vector(0)", "dropped"),
                ],
            ),
            ("Prediction log: buffered", "short", [("sum(aif_gateway_predictions_buffered)", "buffered")]),
        ],
    ),
    "aif-model-quality": (
        "AI Factory / Model quality",
        [
            (
                "Live quality of the last window",
                "short",
                [("aif_monitor_quality or vector(0)", "{{use_case}} v{{model_version}} {{metric}}")],
            ),
            (
                "Feature PSI against the training reference",
                "short",
                [
                    (
                        "max by (use_case, feature) (aif_monitor_feature_psi) or vector(0)",
                        "{{use_case}} {{feature}}",
                    )
                ],
            ),
            (
                "Outcomes expired, late, unmatched per second",
                "ops",
                [
                    ("sum by (use_case) (rate(aif_monitor_join_expired_total[5m]))", "{{use_case}} expired"),
                    ("sum by (use_case) (rate(aif_monitor_join_late_total[5m]))", "{{use_case}} late"),
                    (
                        "sum by (use_case) (rate(aif_monitor_join_unmatched_total[5m]))",
                        "{{use_case}} unmatched",
                    ),
                ],
            ),
            (
                "Labels quarantined by the trainer (last hour)",
                "short",
                [
                    (
                        "sum by (use_case, reason) (increase(aif_trainer_quarantined_labels_total[1h])) or vector(0)",
                        "{{use_case}} {{reason}}",
                    )
                ],
            ),
            (
                "Training loss of the last epoch",
                "short",
                [("aif_trainer_last_loss or vector(0)", "{{use_case}} {{split}}")],
            ),
        ],
    ),
}


def dashboard(uid: str, title: str, panels: list[Panel]) -> dict[str, object]:
    out = []
    for i, (panel_title, unit, targets) in enumerate(panels):
        out.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": panel_title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [
                    {
                        "refId": chr(ord("A") + k),
                        "datasource": {"type": "prometheus", "uid": "${datasource}"},
                        "expr": expr,
                        "legendFormat": legend,
                    }
                    for k, (expr, legend) in enumerate(targets)
                ],
            }
        )
    return {
        "uid": uid,
        "title": title,
        "tags": ["aifactory"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"}
            ]
        },
        "panels": out,
    }


def main() -> None:
    for uid, (title, panels) in DASHBOARDS.items():
        path = HERE / "dashboards" / f"{uid.removeprefix('aif-')}.json"
        path.write_text(json.dumps(dashboard(uid, title, panels), indent=2) + "\n")


if __name__ == "__main__":
    main()
