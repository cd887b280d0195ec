"""The two statements of a merge, per backend: read the tasks already stored under some ids,
and write tasks "newest wins" with the backend's native upsert.

The write's condition repeats the rule `src.database.transfer` applies (replace only a
row of the same user with a strictly older `updated_at`), so it stays right even if
another writer changed a row after it was read.

PostgreSQL gets whole columns as arrays (`unnest`): one statement with seven parameters
per batch, instead of a multi-row VALUES with seven per task, which psycopg must scan
and convert on every call (measured: about four times the throughput). SQLite and
MySQL execute one parameter set per task (their drivers' executemany: native in SQLite,
folded into one multi-row INSERT by PyMySQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection

from src.models.task import TaskRecord, tasks_table

_c = tasks_table.c
_NAMES = TaskRecord._fields
_COLUMNS = tuple(_c[name] for name in _NAMES)
# Every column but the key and the owner (which the rule never changes).
_REPLACED = ("title", "description", "status", "created_at", "updated_at")
_PG_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "id": sa.String(),
    "title": sa.String(),
    "description": sa.Text(),
    "status": sa.String(),
    "user_id": sa.String(),
    # Naive UTC, as the UTCDateTime column stores it (converted in _pg_columns).
    "created_at": sa.DateTime(),
    "updated_at": sa.DateTime(),
}


def _pg_statements() -> tuple[sa.Select[Any], sa.Insert]:
    ids = sa.bindparam("p_ids", type_=postgresql.ARRAY(sa.String()))
    existing = sa.select(*_COLUMNS).where(_c.id == sa.any_(ids))
    arrays = [
        sa.bindparam(f"p_{name}", type_=postgresql.ARRAY(kind)) for name, kind in _PG_TYPES.items()
    ]
    rows = sa.func.unnest(*arrays).table_valued(*_NAMES).render_derived(name="incoming")
    insert = postgresql.insert(tasks_table).from_select(_NAMES, sa.select(*rows.c))
    new = insert.excluded
    upsert = insert.on_conflict_do_update(
        index_elements=[_c.id],
        set_={column: new[column] for column in _REPLACED},
        where=(new.updated_at > _c.updated_at) & (new.user_id == _c.user_id),
    )
    return existing, upsert


def _sqlite_upsert() -> sa.Insert:
    insert = sqlite.insert(tasks_table)
    new = insert.excluded
    return insert.on_conflict_do_update(
        index_elements=[_c.id],
        set_={column: new[column] for column in _REPLACED},
        where=(new.updated_at > _c.updated_at) & (new.user_id == _c.user_id),
    )


def _mysql_upsert() -> sa.Insert:
    insert = mysql.insert(tasks_table)
    new = insert.inserted
    newer = (new.updated_at > _c.updated_at) & (new.user_id == _c.user_id)
    # MySQL applies the assignments left to right, each seeing the ones before it:
    # updated_at goes last, so every other column is still compared with the old value.
    return insert.on_duplicate_key_update(
        [(column, sa.case((newer, new[column]), else_=_c[column])) for column in _REPLACED]
    )


_EXISTING = sa.select(*_COLUMNS).where(_c.id.in_(sa.bindparam("p_ids", expanding=True)))
_PG_EXISTING, _PG_UPSERT = _pg_statements()
_SQLITE_UPSERT = _sqlite_upsert()
_MYSQL_UPSERT = _mysql_upsert()


def _is_postgresql(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql"


def existing_tasks(connection: Connection, ids: Sequence[str]) -> dict[str, TaskRecord]:
    """The stored tasks among `ids`, by id."""
    statement = _PG_EXISTING if _is_postgresql(connection) else _EXISTING
    rows = connection.execute(statement, {"p_ids": list(ids)})
    return {row.id: TaskRecord._make(row) for row in rows}


def write_tasks(connection: Connection, records: Sequence[TaskRecord]) -> None:
    """Insert `records` (distinct ids, aware timestamps), replacing a stored row only when
    it belongs to the same user and is strictly older."""
    if not records:
        return
    name = connection.dialect.name
    if name == "postgresql":
        connection.execute(_PG_UPSERT, _pg_columns(records))
    elif name == "sqlite":
        connection.execute(_SQLITE_UPSERT, [record._asdict() for record in records])
    elif name in ("mysql", "mariadb"):
        connection.execute(_MYSQL_UPSERT, [record._asdict() for record in records])
    else:
        raise ValueError(f"tasks cannot be merged into a {name} database")


def _pg_columns(records: Sequence[TaskRecord]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {f"p_{name}": [] for name in _NAMES}
    for record in records:
        for name, value in zip(_NAMES, record, strict=True):
            if isinstance(value, datetime):
                value = value.astimezone(UTC).replace(tzinfo=None)
            columns[f"p_{name}"].append(value)
    return columns
