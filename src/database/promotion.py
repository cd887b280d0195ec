"""Moving the fallback's tasks into the primary, once the primary answers: the hand-over.

Idempotent by task id, the newest `updated_at` wins (src.database.transfer upserts), and
done under SQLite's write lock: the fallback's rows are read and upserted into the primary
batch by batch, then — in the same SQLite write transaction — the fallback's `tasks`
table and its migration record are dropped and a hand-over record is written. A failure
half-way drops nothing (the primary's upserts are harmless to repeat).

Dropping the table, rather than emptying it, is what keeps several workers apart: every
worker shares the file, and a worker that has not switched yet cannot write (or read) a
task there any more, whatever path its request took — its statement fails, the worker
sees the hand-over record (`handed_over`), switches to the primary and runs the work
there. Emptied, the table would have taken that worker's later writes, which nothing
would ever move. A new fallback period (the primary unreachable at a later start)
migrates the file from scratch.

Which file stands in for which primary, and the marks that say so, are
src.database.fallback_file: a SQLite database that was not a fallback for this primary is
never emptied into it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from src.database.engine import SQLITE_WRITE
from src.database.fallback_file import MARKER, TOMBSTONES, fingerprint, recorded
from src.database.transfer import DEFAULT_BATCH_SIZE, upsert_tasks
from src.models.task import TaskRecord, tasks_table

# Written when the tasks have been handed over to the primary (the fallback then has no
# `tasks` table until a new fallback period migrates it again).
_HANDOVER = sa.Table(
    "todo_handed_over",
    sa.MetaData(),
    sa.Column("primary_fingerprint", sa.String(64), primary_key=True),
    sa.Column("at", sa.String(40), nullable=False),
)
_TASKS = tasks_table
# Tasks whose ids another user owns in the primary: kept here for the operator, never moved.
_UNMOVED = sa.Table(
    "todo_unmoved_tasks", sa.MetaData(), *(column._copy() for column in tasks_table.c)
)
_VERSION_TABLE = "alembic_version"
_COLUMNS = tuple(_TASKS.c[name] for name in TaskRecord._fields)


@dataclass(frozen=True)
class PromotionReport:
    seen: int = 0
    inserted: int = 0
    updated: int = 0
    kept_newer: int = 0  # the primary's copy was as new or newer
    conflicts: int = 0  # ids another user owns in the primary: left in the fallback
    deleted: int = 0  # deleted in the fallback, and so in the primary too
    # The fallback had no tasks table: another worker had handed it over already.
    earlier: bool = False
    # This move handed the fallback over (dropped its tasks table).
    handed_over: bool = False

    def describe(self) -> str:
        if self.earlier:
            return "the SQLite fallback's tasks had already been moved into the primary"
        text = (
            f"moved {self.seen - self.conflicts} task(s) from the SQLite fallback into the "
            f"primary ({self.inserted} new, {self.updated} updated, {self.kept_newer} already "
            "as new in the primary)"
        )
        if self.deleted:
            text += f"; {self.deleted} task(s) deleted in the fallback were deleted there too"
        if self.conflicts:
            text += (
                f"; {self.conflicts} task(s) were kept in the fallback file's table "
                f"{_UNMOVED.name} because their ids belong to another user in the primary"
            )
        return text


def move_tasks(
    fallback: Engine, primary: Engine, primary_url: URL, *, only_if_marked: bool = False
) -> PromotionReport:
    """Upsert every task of `fallback` into `primary`, then hand the fallback over: drop
    its `tasks` table (the module's docstring says why) in the same SQLite transaction.

    `primary_url`: the configured primary's URL (what the marks are made of). With
    `only_if_marked`, nothing happens unless `fallback` was marked as standing in for
    that primary. Raises what the databases raise (nothing is dropped then).
    """
    with fallback.connect() as source:
        try:
            with source.begin():  # BEGIN IMMEDIATE: the write lock
                if not sa.inspect(source).has_table(_TASKS.name):
                    return PromotionReport(earlier=True)
                if only_if_marked and not recorded(source, MARKER, primary_url):
                    return PromotionReport()
                report, conflicts = _copy(source, primary)
                _hand_over(source, primary_url, conflicts)
                return replace(report, handed_over=True)
        except BaseException:
            # Not back into the pool: whatever state the failure left it in (a snapshot
            # held by a cursor, say), requests must not inherit it.
            source.invalidate()
            raise


def handed_over(fallback: Engine, primary: URL) -> bool:
    """Whether `fallback`'s tasks were handed over to `primary` (by any worker) and no
    new fallback period has begun since: its `tasks` table is gone and the record says so.
    """
    with fallback.connect() as connection:
        # A read transaction (BEGIN, not IMMEDIATE): a move in progress holds the write lock.
        connection.execution_options(**{SQLITE_WRITE: False})
        with connection.begin():
            if sa.inspect(connection).has_table(_TASKS.name):
                return False
            return recorded(connection, _HANDOVER, primary)


def handed_over_at(engine: Engine) -> str | None:
    """When `engine`'s SQLite file last handed its tasks over to a primary (ISO 8601),
    or None when it never did."""
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table(_HANDOVER.name):
            return None
        latest = connection.execute(sa.select(sa.func.max(_HANDOVER.c.at))).scalar()
        return str(latest) if latest else None


def _hand_over(source: Connection, primary: URL, conflicts: list[str]) -> None:
    if conflicts:
        _UNMOVED.create(source, checkfirst=True)
        names = [column.name for column in _UNMOVED.c]
        for start in range(0, len(conflicts), DEFAULT_BATCH_SIZE):
            chosen = conflicts[start : start + DEFAULT_BATCH_SIZE]
            rows = sa.select(*(_TASKS.c[name] for name in names)).where(_TASKS.c.id.in_(chosen))
            source.execute(_UNMOVED.insert().prefix_with("OR REPLACE").from_select(names, rows))
    _TASKS.drop(source)  # its indexes and its trigger go with it
    TOMBSTONES.drop(source, checkfirst=True)
    source.exec_driver_sql(f"DROP TABLE IF EXISTS {_VERSION_TABLE}")
    if sa.inspect(source).has_table(MARKER.name):
        source.execute(MARKER.delete())
    _HANDOVER.create(source, checkfirst=True)
    source.execute(
        _HANDOVER.insert()
        .prefix_with("OR REPLACE")
        .values(primary_fingerprint=fingerprint(primary), at=datetime.now(UTC).isoformat())
    )


def _copy(source: Connection, primary: Engine) -> tuple[PromotionReport, list[str]]:
    seen = inserted = updated = kept = 0
    conflicts: list[str] = []
    # One transaction in the primary: a move that fails leaves nothing there, so a task
    # deleted in the fallback afterwards cannot come back with the next move.
    with primary.begin() as target:
        rows = source.execute(sa.select(*_COLUMNS).order_by(_TASKS.c.id))
        try:
            while batch := [TaskRecord._make(row) for row in rows.fetchmany(DEFAULT_BATCH_SIZE)]:
                counts = upsert_tasks(target, batch)
                seen += len(batch)
                inserted += counts.inserted
                updated += counts.updated
                kept += counts.unchanged + counts.skipped
                conflicts += counts.conflict_ids
        finally:
            rows.close()  # an open cursor keeps its snapshot even after a rollback
        deleted = _delete_tombstoned(source, target)
    report = PromotionReport(seen, inserted, updated, kept, len(conflicts), deleted=deleted)
    return report, conflicts


def _delete_tombstoned(source: Connection, target: Connection) -> int:
    """Delete in the primary what was deleted in the fallback, unless it changed there
    since (or its id is another user's, or it was created again in the fallback)."""
    if not sa.inspect(source).has_table(TOMBSTONES.name):
        return 0
    gone = source.execute(
        sa.select(TOMBSTONES.c.id, TOMBSTONES.c.user_id, TOMBSTONES.c.deleted_at).where(
            TOMBSTONES.c.id.not_in(sa.select(_TASKS.c.id))
        )
    ).all()
    deleted = 0
    for task_id, user_id, deleted_at in gone:
        result = target.execute(
            _TASKS.delete().where(
                _TASKS.c.id == task_id,
                _TASKS.c.user_id == user_id,
                _TASKS.c.updated_at <= datetime.fromisoformat(deleted_at),
            )
        )
        deleted += result.rowcount
    return deleted
