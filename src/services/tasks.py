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

from src.database.transactions import retrying
from src.models.task import RECORD_COLUMNS, TaskRecord, TaskStatus, tasks_table, utc_now
from src.schemas.tasks import StatusFilter
from src.services.errors import TaskNotFound

_c = tasks_table.c
_COLUMNS = RECORD_COLUMNS
_ONE_MICROSECOND = timedelta(microseconds=1)


class TaskPage(NamedTuple):
    items: list[TaskRecord]
    total: int


# Statements are built once, with bound parameters: building them per request costs
# more than running them on SQLite.
_USER = sa.bindparam("p_user", type_=sa.String)
_TASK = sa.bindparam("p_task", type_=sa.String)
_STATUS = sa.bindparam("p_status", type_=sa.String)
_OWNED = (_c.id == _TASK, _c.user_id == _USER)
_NEWEST_FIRST = (_c.created_at.desc(), _c.id.desc())


def _page(*where: sa.ColumnElement[bool]) -> sa.Select[Any]:
    return (
        sa.select(*_COLUMNS)
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
_DELETE = sa.delete(tasks_table).where(*_OWNED)


def list_tasks(
    conn: Connection, user_id: str, status: StatusFilter, limit: int, offset: int
) -> TaskPage:
    """Newest first; ties (same microsecond) broken by id so pages never overlap."""
    page, count = _LIST_ALL if status == "all" else _LIST_STATUS
    params = {"p_user": user_id, "p_status": status, "p_limit": limit, "p_offset": offset}
    items = [TaskRecord._make(row) for row in conn.execute(page, params)]
    if 0 < len(items) < limit or (not items and offset == 0):
        # A partial page ends the list: the total is known without counting.
        return TaskPage(items, offset + len(items))
    return TaskPage(items, int(conn.execute(count, params).scalar_one()))


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
    try:
        conn.execute(_INSERT, record._asdict())
    except sa.exc.IntegrityError:
        if not retrying.get():
            raise
        stored = conn.execute(_FIND, {"p_user": record.user_id, "p_task": record.id}).first()
        if stored is None or TaskRecord._make(stored)[:4] != record[:4]:
            raise
        return TaskRecord._make(stored)
    return record


def _find(conn: Connection, user_id: str, task_id: str, *, for_update: bool = False) -> TaskRecord:
    statement = _FIND_FOR_UPDATE if for_update else _FIND
    row = conn.execute(statement, {"p_user": user_id, "p_task": task_id}).first()
    if row is None:
        raise TaskNotFound()
    return TaskRecord._make(row)


def get_task(conn: Connection, user_id: str, task_id: str) -> TaskRecord:
    return _find(conn, user_id, task_id)


def _apply(conn: Connection, current: TaskRecord, values: dict[str, Any]) -> TaskRecord:
    # Strictly later than before, even if the clock stepped back or two edits share a
    # microsecond: clients compare updated_at to see that something changed.
    values["updated_at"] = max(utc_now(), current.updated_at + _ONE_MICROSECOND)
    conn.execute(
        sa.update(tasks_table).where(*_OWNED).values(values),
        {"p_user": current.user_id, "p_task": current.id},
    )
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
    result = conn.execute(_DELETE, {"p_user": user_id, "p_task": task_id})
    if result.rowcount == 0 and not retrying.get():
        raise TaskNotFound()
