"""The database artifact store: blobs cut into chunks in the registry's database.

Used when ``artifact_store=database`` (services/registry/store/blobs.py), so registry
replicas on one PostgreSQL share their artifacts with no shared folder.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifact_blobs",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_artifact_blobs"),
    )
    op.create_table(
        "artifact_chunks",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", "seq", name="pk_artifact_chunks"),
        sa.ForeignKeyConstraint(
            ["sha256"],
            ["artifact_blobs.sha256"],
            name="fk_artifact_chunks_sha256_artifact_blobs",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("artifact_chunks")
    op.drop_table("artifact_blobs")
