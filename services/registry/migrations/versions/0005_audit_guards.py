"""Audit log guards on PostgreSQL: no TRUNCATE, and a head that only moves forward.

Row triggers (0001) do not fire on TRUNCATE, so a role that may truncate could empty the
log in one statement; a statement trigger refuses it. The head row may only advance (the
store moves it one entry at a time), so it cannot be wound back to hide removed entries.
Privileges (the runtime role may only INSERT and SELECT the log) are granted by
:func:`services.registry.store.roles.grant_runtime`, which knows the runtime role's name.
SQLite has no TRUNCATE and no roles: nothing to do there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_UP = [
    """CREATE FUNCTION audit_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION '% is append-only: TRUNCATE refused', TG_TABLE_NAME; END $$""",
    """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
       FOR EACH STATEMENT EXECUTE FUNCTION audit_no_truncate()""",
    """CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
       FOR EACH STATEMENT EXECUTE FUNCTION audit_no_truncate()""",
    """CREATE FUNCTION audit_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF TG_OP = 'DELETE' OR NEW.sequence <> OLD.sequence + 1 THEN
           RAISE EXCEPTION 'audit_head only advances one entry at a time';
         END IF;
         RETURN NEW;
       END $$""",
    """CREATE TRIGGER audit_head_forward BEFORE UPDATE OR DELETE ON audit_head
       FOR EACH ROW EXECUTE FUNCTION audit_head_forward()""",
]
_DOWN = [
    "DROP TRIGGER IF EXISTS audit_head_forward ON audit_head",
    "DROP FUNCTION IF EXISTS audit_head_forward()",
    "DROP TRIGGER IF EXISTS audit_head_no_truncate ON audit_head",
    "DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events",
    "DROP FUNCTION IF EXISTS audit_no_truncate()",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _UP:
            op.execute(sa.text(statement))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _DOWN:
            op.execute(sa.text(statement))
