"""The prediction index keeps the entity each prediction was served for.

A gateway that did not serve a prediction (another replica, or its own previous
process) asks the registry for it to fill in feedback that names only the prediction.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("prediction_index") as batch:
        batch.add_column(sa.Column("entity_id", sa.String(256), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("prediction_index") as batch:
        batch.drop_column("entity_id")
