"""What a database already holds, before any migration touches it.

The app creates and migrates only its own tables. A database may already hold a `tasks`
table that something else created (older apps of this kind use `id serial` and a
boolean `completed`), or be at a schema revision this version does not know (migrated by
a newer version, or another Alembic project sharing the database). Migrating over either
would fail half-way or, worse, change someone's data; so both are refused, with what was
found and what to do, and nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

TABLE = "tasks"
VERSION_TABLE = "alembic_version"

SchemaKind = Literal["empty", "ours", "unknown_revision", "foreign_table"]


@dataclass(frozen=True)
class SchemaState:
    kind: SchemaKind
    revision: str | None = None
    detail: str = ""


class SchemaConflict(Exception):
    """The database holds tables this version must not migrate. `message` says what was
    found and what to do; it names no host, user or password."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def inspect_schema(connection: Connection, known_revisions: frozenset[str]) -> SchemaState:
    """Read (never write) which of the cases above the database is in."""
    inspector = sa.inspect(connection)
    tables = set(inspector.get_table_names())
    revision: str | None = None
    if VERSION_TABLE in tables:
        version = sa.table(VERSION_TABLE, sa.column("version_num"))
        rows = connection.execute(sa.select(version.c.version_num)).all()
        revisions = [str(row[0]) for row in rows]
        if revisions:
            unknown = [r for r in revisions if r not in known_revisions]
            if unknown:
                return SchemaState("unknown_revision", unknown[0])
            revision = revisions[0]
    if revision is not None:
        return SchemaState("ours", revision)
    if TABLE in tables:
        columns = ", ".join(
            f"{column['name']} {_type_name(column['type'])}"
            for column in inspector.get_columns(TABLE)
        )
        return SchemaState("foreign_table", None, columns)
    return SchemaState("empty")


def refuse(state: SchemaState, head: str | None) -> SchemaConflict | None:
    """The conflict to raise for `state`, or None when migrating is safe."""
    if state.kind == "unknown_revision":
        return SchemaConflict(
            f"The database is at schema revision {state.revision!r}, which this version "
            f"(head {head!r}) does not know: it was migrated by a newer version of this app "
            "or belongs to another application's Alembic migrations. Nothing was changed. "
            "Deploy the newer version, or point DATABASE_URL at a database of its own."
        )
    if state.kind == "foreign_table":
        return SchemaConflict(
            f"The database already has a table named {TABLE!r} that this app did not create "
            f"(columns: {state.detail[:300]}). The app never changes or drops it. Point "
            "DATABASE_URL at another database (on PostgreSQL, another schema also works: "
            "CREATE SCHEMA todo, then add ?options=-csearch_path%3Dtodo to the URL), or "
            f"rename that table (ALTER TABLE {TABLE} RENAME TO {TABLE}_old): a running app "
            "tries the database again by itself, at most a minute apart, so a rename needs "
            "no restart."
        )
    return None


def _type_name(column_type: object) -> str:
    try:
        return str(column_type).lower()
    except Exception:  # noqa: BLE001 - a dialect type that cannot compile itself
        return type(column_type).__name__.lower()
