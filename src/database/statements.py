"""The task queries run on the driver's own cursor: compiled once per dialect, executed
without SQLAlchemy's per-statement machinery.

The statements stay SQLAlchemy Core (one definition for every backend, in
src.services.tasks); what is skipped per execution is the execution context, the result
wrappers and the type processors, which for a page of 50 tasks cost several times the
query itself. The two values that need a type are converted here, once: timestamps,
stored as naive UTC (SQLite: text `YYYY-MM-DD HH:MM:SS.ffffff`, SQLAlchemy's storage
format; PostgreSQL and MySQL: their datetime), and returned timezone-aware.

The connection stays SQLAlchemy's: pooling, the transaction (begun and committed by the
unit of work), the deadline watchdog and the liveness check are unchanged. Errors are the
driver's own (src.database.error_codes reads them).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, ColumnElement


class Compiled(NamedTuple):
    sql: str
    # The parameter names in placeholder order (qmark/format), or None when the driver
    # takes them by name (pyformat).
    positions: tuple[str, ...] | None


_cache: dict[tuple[int, str, frozenset[str]], Compiled] = {}
_lock = threading.Lock()


def compiled(
    statement: ClauseElement, dialect: Dialect, column_keys: Sequence[str] = ()
) -> Compiled:
    """`statement` as SQL text for `dialect` (cached; `column_keys`: the columns an INSERT or
    UPDATE sets, which decide its text)."""
    key = (id(statement), dialect.name, frozenset(column_keys))
    found = _cache.get(key)
    if found is None:
        text = statement.compile(dialect=dialect, column_keys=list(column_keys) or None)
        positional = dialect.paramstyle in ("qmark", "format", "numeric")
        positions = tuple(getattr(text, "positiontup", None) or ()) if positional else None
        found = Compiled(str(text), positions)
        with _lock:
            _cache[key] = found
    return found


def execute(
    connection: Connection,
    statement: ClauseElement,
    params: Mapping[str, Any],
    column_keys: Sequence[str] = (),
) -> Any:
    """Run `statement` with `params`; returns the driver's cursor (fetch from it, then let
    it go: it is closed with the connection)."""
    dialect = connection.dialect
    sql, positions = compiled(statement, dialect, column_keys)
    values: Any = params if positions is None else tuple(params[name] for name in positions)
    # The DBAPI connection: the driver's own, or SQLAlchemy's sync face of psycopg's
    # asyncio connection (src.database.async_engine), whose calls await in a greenlet.
    dbapi: Any = connection.connection.dbapi_connection
    if dialect.name == "sqlite":
        return dbapi.execute(sql, values)  # sqlite3's shortcut: returns its cursor
    cursor = dbapi.cursor()
    cursor.execute(sql, values)
    return cursor


class IsoTimestamp(ColumnElement[str]):
    """A stored timestamp column read as ISO 8601 text (`2026-12-01T09:41:28.198696+00:00`),
    formatted by the database: formatting 100 datetimes in Python costs more than a page's
    query on PostgreSQL."""

    inherit_cache = True
    type = sa.String()

    def __init__(self, column: ColumnElement[Any]) -> None:
        self.column = column


@compiles(IsoTimestamp)
def _iso_sqlite(element: IsoTimestamp, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite keeps SQLAlchemy's text "YYYY-MM-DD HH:MM:SS.ffffff" (always six digits).
    return f"replace({compiler.process(element.column, **kw)}, ' ', 'T') || '+00:00'"


@compiles(IsoTimestamp, "postgresql")
def _iso_postgresql(element: IsoTimestamp, compiler: SQLCompiler, **kw: Any) -> str:
    pattern = compiler.render_literal_value('YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"', sa.String())
    return f"to_char({compiler.process(element.column, **kw)}, {pattern})"


@compiles(IsoTimestamp, "mysql")
def _iso_mysql(element: IsoTimestamp, compiler: SQLCompiler, **kw: Any) -> str:
    pattern = compiler.render_literal_value("%Y-%m-%dT%H:%i:%s.%f+00:00", sa.String())
    return f"DATE_FORMAT({compiler.process(element.column, **kw)}, {pattern})"


def stored(value: datetime, dialect: Dialect) -> Any:
    """An aware datetime as the column stores it: naive UTC (text for SQLite)."""
    naive = value.astimezone(UTC).replace(tzinfo=None)
    if dialect.name == "sqlite":
        return naive.isoformat(" ", "microseconds")
    return naive


def loaded(value: Any) -> datetime:
    """A stored timestamp back as an aware UTC datetime."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
