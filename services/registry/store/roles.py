"""Two database roles on PostgreSQL: the owner migrates, the runtime role only works.

The registry's tables belong to the role that runs the migrations (the *owner*); the
registry serves as another role (the *runtime* role, the user of ``database_url``) that
gets only what serving needs. On the audit log that is INSERT and SELECT (no UPDATE,
DELETE or TRUNCATE), and on its head row SELECT and UPDATE (the head's own trigger lets
it only advance). A runtime role that owned the tables could drop the triggers; this one
cannot, so rewriting history takes the owner's or the superuser's credentials, and the
signed checkpoints (:mod:`services.registry.checkpoints`) catch those.

:func:`migrate_as_owner` is what the registry runs at start when ``database_owner_url``
is set (or what a deployment's migration job runs); SQLite has no roles, so there it
only migrates.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import make_url

from libs.errors import ConfigError
from services.registry.store.sql import open_store

AUDIT_TABLES = ("audit_events", "audit_head")


def runtime_role(runtime_url: str) -> str:
    role = make_url(runtime_url).username or ""
    if not role:
        raise ConfigError("database_url names no user: the runtime role cannot be granted its privileges")
    return role


def grant_runtime(owner_url: str, role: str) -> None:
    """Grant ``role`` what the registry needs on the owner's schema, and nothing more."""
    store = open_store(owner_url, migrate=False)
    try:
        if store.db.dialect != "postgresql":
            return
        with store.db.write() as session:
            owner = session.execute(text("SELECT current_user")).scalar_one()
            if owner == role:
                raise ConfigError(
                    f"database_owner_url and database_url are the same role {role!r}: "
                    "the runtime role must not own the tables"
                )
            schema = session.execute(text("SELECT current_schema()")).scalar_one()
            q = _quote
            tables = [
                row[0]
                for row in session.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}
                )
            ]
            statements = [f"GRANT USAGE ON SCHEMA {q(schema)} TO {q(role)}"]
            for table in tables:
                name = f"{q(schema)}.{q(table)}"
                statements.append(f"REVOKE ALL ON {name} FROM {q(role)}")
                if table == "audit_events":
                    grants = "SELECT, INSERT"
                elif table == "audit_head":
                    grants = "SELECT, UPDATE"
                elif table == "alembic_version":
                    grants = "SELECT"
                else:
                    grants = "SELECT, INSERT, UPDATE, DELETE"
                statements.append(f"GRANT {grants} ON {name} TO {q(role)}")
            statements.append(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {q(schema)} TO {q(role)}")
            for statement in statements:
                session.execute(text(statement))
    finally:
        store.close()


def migrate_as_owner(owner_url: str, runtime_url: str) -> None:
    """Migrate as the owner, then grant the runtime role (the user of ``runtime_url``)."""
    open_store(owner_url, migrate=True).close()
    if make_url(owner_url).get_backend_name() == "postgresql":
        grant_runtime(owner_url, runtime_role(runtime_url))


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
