"""Initial monitor schema: drift reports, alerts, tracker state, outbox.

The tables the monitor created with ``create_all`` before it had migrations; a database
file from then has them without an ``alembic_version`` table, so each table (with its
indexes) is created only where it is missing.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TABLES = ("monitor_outbox", "monitor_state", "monitor_alerts", "monitor_drift_reports")


def _missing(table: str) -> bool:
    return not sa.inspect(op.get_bind()).has_table(table)


def upgrade() -> None:
    if _missing("monitor_drift_reports"):
        op.create_table(
            "monitor_drift_reports",
            sa.Column("report_id", sa.String(300), primary_key=True),
            sa.Column("use_case", sa.String(64), nullable=False),
            sa.Column("model_name", sa.String(200), nullable=False),
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column("drift_detected", sa.Boolean(), nullable=False),
            sa.Column("created_at", sa.DateTime(), nullable=False),
            sa.Column("report", sa.LargeBinary(), nullable=False),
        )
        for column in ("use_case", "drift_detected", "created_at"):
            op.create_index(f"ix_monitor_drift_reports_{column}", "monitor_drift_reports", [column])
    if _missing("monitor_alerts"):
        op.create_table(
            "monitor_alerts",
            sa.Column("alert_id", sa.String(300), primary_key=True),
            sa.Column("use_case", sa.String(64), nullable=False),
            sa.Column("model_name", sa.String(200), nullable=False),
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column("severity", sa.Integer(), nullable=False),
            sa.Column("kind", sa.String(32), nullable=False),
            sa.Column("message", sa.Text(), nullable=False),
            sa.Column("report_id", sa.String(300), nullable=False),
            sa.Column("created_at", sa.DateTime(), nullable=False),
            sa.Column("resolved_at", sa.DateTime(), nullable=True),
        )
        for column in ("use_case", "created_at"):
            op.create_index(f"ix_monitor_alerts_{column}", "monitor_alerts", [column])
    if _missing("monitor_state"):
        op.create_table(
            "monitor_state",
            sa.Column("key", sa.String(300), primary_key=True),
            sa.Column("value", sa.Text(), nullable=False),
            sa.Column("updated_at", sa.DateTime(), nullable=False),
        )
    if _missing("monitor_outbox"):
        op.create_table(
            "monitor_outbox",
            sa.Column("event_id", sa.String(300), primary_key=True),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("use_case", sa.String(64), nullable=False),
            sa.Column("payload", sa.LargeBinary(), nullable=False),
            sa.Column("created_at", sa.DateTime(), nullable=False),
            sa.Column("sent_at", sa.DateTime(), nullable=True),
        )
        for column in ("created_at", "sent_at"):
            op.create_index(f"ix_monitor_outbox_{column}", "monitor_outbox", [column])


def downgrade() -> None:
    for table in _TABLES:
        op.drop_table(table)
