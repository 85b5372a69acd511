"""The use-case catalogue: each use case's current version and state, every applied spec.

The registry owns the catalogue (ApplyUseCase, RetireUseCase) and publishes each change
through the outbox on the compacted use-case topic that every service follows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usecases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_usecases"),
    )
    op.create_table(
        "usecase_versions",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec_yaml", sa.Text(), nullable=False),
        sa.Column("spec_sha256", sa.String(64), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("applied_at", sa.DateTime(), nullable=False),
        sa.Column("applied_by", sa.JSON(), nullable=False),
        sa.Column("audit_event_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name="pk_usecase_versions"),
        sa.ForeignKeyConstraint(["name"], ["usecases.name"], name="fk_usecase_versions_name_usecases"),
    )


def downgrade() -> None:
    op.drop_table("usecase_versions")
    op.drop_table("usecases")
