"""Task queries. Every function takes a connection in an open transaction and the owner's
id; a task that does not exist and a task owned by someone else are the same
`TASK_NOT_FOUND`.

Plain Core statements on a Connection: no ORM session, identity map or unit of work
per request, and each operation is the fewest round trips that keep it correct
(list: one query for the page, plus a count only when the page cannot tell the total).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from src.database.error_codes import Code, code_of
from src.database.statements import IsoTimestamp, execute, loaded, stored
from src.database.transactions import retrying
from src.models.task import RECORD_COLUMNS, TaskRecord, TaskStatus, tasks_table, utc_now
from src.schemas.tasks import StatusFilter
from src.services.errors import TaskNotFound

_c = tasks_table.c
_COLUMNS = RECORD_COLUMNS
_ONE_MICROSECOND = timedelta(microseconds=1)


class ListedTask(NamedTuple):
    """A task as the list returns it: `TaskRecord`'s fields, the timestamps already ISO 8601
    text (UTC, microseconds, `+00:00`)."""

    id: str
    title: str
    description: str | None
    status: str
    user_id: str
    created_at: str
    updated_at: str


class TaskPage(NamedTuple):
    items: list[ListedTask]
    total: int


# Statements are built once, with bound parameters: building them per request costs
# more than running them on SQLite.
_USER = sa.bindparam("p_user", type_=sa.String)
_TASK = sa.bindparam("p_task", type_=sa.String)
_STATUS = sa.bindparam("p_status", type_=sa.String)
_OWNED = (_c.id == _TASK, _c.user_id == _USER)
_NEWEST_FIRST = (_c.created_at.desc(), _c.id.desc())


# The list's timestamps come formatted by the database (src.database.statements).
_LISTED_COLUMNS = (
    *_COLUMNS[:5],
    IsoTimestamp(_c.created_at).label("created_at"),
    IsoTimestamp(_c.updated_at).label("updated_at"),
)


def _page(*where: sa.ColumnElement[bool]) -> sa.Select[Any]:
    return (
        sa.select(*_LISTED_COLUMNS)
        .where(*where)
        .order_by(*_NEWEST_FIRST)
        .limit(sa.bindparam("p_limit", type_=sa.Integer))
        .offset(sa.bindparam("p_offset", type_=sa.Integer))
    )


def _count(*where: sa.ColumnElement[bool]) -> sa.Select[Any]:
    return sa.select(sa.func.count()).select_from(tasks_table).where(*where)


_LIST_ALL = (_page(_c.user_id == _USER), _count(_c.user_id == _USER))
_LIST_STATUS = (
    _page(_c.user_id == _USER, _c.status == _STATUS),
    _count(_c.user_id == _USER, _c.status == _STATUS),
)
_FIND = sa.select(*_COLUMNS).where(*_OWNED)
# Row lock on PostgreSQL/MySQL (SQLite's write transaction already excludes other
# writers), so concurrent toggles and edits of one task apply one after the other.
_FIND_FOR_UPDATE = _FIND.with_for_update()
_INSERT = sa.insert(tasks_table)
_INSERT_KEYS = TaskRecord._fields
_UPDATE = sa.update(tasks_table).where(*_OWNED)
_DELETE = sa.delete(tasks_table).where(*_OWNED)


def _record(row: Any) -> TaskRecord:
    i, title, description, status, user, created, updated = row
    return TaskRecord(i, title, description, status, user, loaded(created), loaded(updated))


def list_tasks(
    conn: Connection, user_id: str, status: StatusFilter, limit: int, offset: int
) -> TaskPage:
    """Newest first; ties (same microsecond) broken by id so pages never overlap."""
    page, count = _LIST_ALL if status == "all" else _LIST_STATUS
    params = {"p_user": user_id, "p_status": status, "p_limit": limit, "p_offset": offset}
    items = list(map(ListedTask._make, execute(conn, page, params).fetchall()))
    if 0 < len(items) < limit or (not items and offset == 0):
        # A partial page ends the list: the total is known without counting.
        return TaskPage(items, offset + len(items))
    return TaskPage(items, int(execute(conn, count, params).fetchone()[0]))


def new_task(
    user_id: str, title: str, description: str | None, status: str = TaskStatus.PENDING.value
) -> TaskRecord:
    """A task not yet stored: its id and timestamps are fixed before the first attempt, so
    that a retry after a lost connection inserts the very same row."""
    now = utc_now()
    return TaskRecord(
        id=str(uuid.uuid4()),
        title=title,
        description=description,
        status=status,
        user_id=user_id,
        created_at=now,
        updated_at=now,
    )


def create_task(conn: Connection, record: TaskRecord) -> TaskRecord:
    """Insert `record`; idempotent: when a retry finds the row the first attempt stored, that
    row is the result."""
    values = record._asdict()
    values["created_at"] = stored(record.created_at, conn.dialect)
    values["updated_at"] = stored(record.updated_at, conn.dialect)
    try:
        execute(conn, _INSERT, values, _INSERT_KEYS)
    except Exception as error:
        if not retrying.get() or code_of(error) is not Code.DUPLICATE:
            raise
        row = execute(conn, _FIND, {"p_user": record.user_id, "p_task": record.id}).fetchone()
        if row is None or _record(row)[:4] != record[:4]:
            raise
        return _record(row)
    return record


def _find(conn: Connection, user_id: str, task_id: str, *, for_update: bool = False) -> TaskRecord:
    statement = _FIND_FOR_UPDATE if for_update else _FIND
    row = execute(conn, statement, {"p_user": user_id, "p_task": task_id}).fetchone()
    if row is None:
        raise TaskNotFound()
    return _record(row)


def get_task(conn: Connection, user_id: str, task_id: str) -> TaskRecord:
    return _find(conn, user_id, task_id)


def _apply(conn: Connection, current: TaskRecord, values: dict[str, Any]) -> TaskRecord:
    # Strictly later than before, even if the clock stepped back or two edits share a
    # microsecond: clients compare updated_at to see that something changed.
    values["updated_at"] = max(utc_now(), current.updated_at + _ONE_MICROSECOND)
    params = {**values, "p_user": current.user_id, "p_task": current.id}
    params["updated_at"] = stored(values["updated_at"], conn.dialect)
    execute(conn, _UPDATE, params, sorted(values))
    return current._replace(**values)


def update_task(
    conn: Connection, user_id: str, task_id: str, changes: dict[str, str | None]
) -> TaskRecord:
    """`changes`: any of `title`, `description`, `status`; `updated_at` always moves."""
    current = _find(conn, user_id, task_id, for_update=True)
    return _apply(conn, current, dict(changes))


def set_completion(
    conn: Connection, user_id: str, task_id: str, completed: bool | None
) -> TaskRecord:
    """`completed=None` toggles; a value sets it and changes nothing when already so."""
    current = _find(conn, user_id, task_id, for_update=True)
    if completed is None:
        completed = current.status != TaskStatus.COMPLETED.value
    status = (TaskStatus.COMPLETED if completed else TaskStatus.PENDING).value
    if status == current.status:
        return current
    return _apply(conn, current, {"status": status})


def delete_task(conn: Connection, user_id: str, task_id: str) -> None:
    """Idempotent: a retry that finds nothing means the first attempt deleted it."""
    result = execute(conn, _DELETE, {"p_user": user_id, "p_task": task_id})
    if result.rowcount == 0 and not retrying.get():
        raise TaskNotFound()
