"""Initial evaluator schema: evaluation reports, each kept as its ``EvaluationReport`` protobuf.

The table the evaluator created with ``create_all`` before it had migrations; a database
file from then has it without an ``alembic_version`` table, so it (with its index) is
created only where it is missing.

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


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("evaluation_reports"):
        return
    op.create_table(
        "evaluation_reports",
        sa.Column("report_id", sa.String(100), primary_key=True),
        sa.Column("use_case", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(300), nullable=True, unique=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("report", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_evaluation_reports_use_case", "evaluation_reports", ["use_case"])


def downgrade() -> None:
    op.drop_table("evaluation_reports")
