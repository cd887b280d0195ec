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

A fallback file remembers which primary it stood in for (a fingerprint of backend, host,
port and database — never credentials), so that tasks left in it by an earlier run are
moved into that primary at its next start, and a SQLite database that was never a
fallback is never emptied into a newly configured server.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from src.database.transfer import DEFAULT_BATCH_SIZE, upsert_tasks
from src.models.task import TaskRecord, tasks_table

_MARKER = sa.Table(
    "todo_fallback_for",
    sa.MetaData(),
    sa.Column("primary_fingerprint", sa.String(64), primary_key=True),
    sa.Column("since", sa.String(40), nullable=False),
)
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
    # The fallback had no tasks table: another worker had handed it over already.
    earlier: bool = False

    def describe(self) -> str:
        if self.earlier:
            return "the SQLite fallback's tasks had already been moved into the primary"
        text = (
            f"moved {self.seen - self.conflicts} task(s) from the SQLite fallback into the "
            f"primary ({self.inserted} new, {self.updated} updated, {self.kept_newer} already "
            "as new in the primary)"
        )
        if self.conflicts:
            text += (
                f"; {self.conflicts} task(s) were kept in the fallback file's table "
                f"{_UNMOVED.name} because their ids belong to another user in the primary"
            )
        return text


def fingerprint(url: URL) -> str:
    identity = f"{url.get_backend_name()}|{url.host or ''}|{url.port or ''}|{url.database or ''}"
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


def mark_fallback_for(engine: Engine, primary: URL) -> None:
    """Record in the fallback file which primary it stands in for."""
    with engine.begin() as connection:
        _MARKER.create(connection, checkfirst=True)
        if not _recorded(connection, _MARKER, primary):
            connection.execute(
                _MARKER.insert().values(
                    primary_fingerprint=fingerprint(primary), since=datetime.now(UTC).isoformat()
                )
            )


def move_tasks(
    fallback: Engine, primary: Engine, primary_url: URL, *, only_if_marked: bool = False
) -> PromotionReport:
    """Upsert every task of `fallback` into `primary`, then hand the fallback over: drop
    its `tasks` table (the module's docstring says why) in the same SQLite transaction.

    `primary_url`: the configured primary's URL (what the marks are made of). With
    `only_if_marked`, nothing happens unless `fallback` was marked as standing in for
    that primary. Raises what the databases raise (nothing is dropped then).
    """
    with fallback.connect() as source, source.begin():  # BEGIN IMMEDIATE: the write lock
        if not sa.inspect(source).has_table(_TASKS.name):
            return PromotionReport(earlier=True)
        if only_if_marked and not _recorded(source, _MARKER, primary_url):
            return PromotionReport()
        report, conflicts = _copy(source, primary)
        _hand_over(source, primary_url, conflicts)
        return report


def handed_over(fallback: Engine, primary: URL) -> bool:
    """Whether `fallback`'s tasks were handed over to `primary` (by any worker) and no
    new fallback period has begun since: its `tasks` table is gone and the record says so.
    """
    with fallback.connect() as connection, connection.begin():
        if sa.inspect(connection).has_table(_TASKS.name):
            return False
        return _recorded(connection, _HANDOVER, primary)


def _hand_over(source: Connection, primary: URL, conflicts: list[str]) -> None:
    if conflicts:
        _UNMOVED.create(source, checkfirst=True)
        names = [column.name for column in _UNMOVED.c]
        for start in range(0, len(conflicts), DEFAULT_BATCH_SIZE):
            chosen = conflicts[start : start + DEFAULT_BATCH_SIZE]
            rows = sa.select(*(_TASKS.c[name] for name in names)).where(_TASKS.c.id.in_(chosen))
            source.execute(_UNMOVED.insert().prefix_with("OR REPLACE").from_select(names, rows))
    _TASKS.drop(source)  # its indexes go with it
    source.exec_driver_sql(f"DROP TABLE IF EXISTS {_VERSION_TABLE}")
    if sa.inspect(source).has_table(_MARKER.name):
        source.execute(_MARKER.delete())
    _HANDOVER.create(source, checkfirst=True)
    source.execute(
        _HANDOVER.insert()
        .prefix_with("OR REPLACE")
        .values(primary_fingerprint=fingerprint(primary), at=datetime.now(UTC).isoformat())
    )


def _recorded(connection: Connection, record: sa.Table, primary: URL) -> bool:
    """Whether `record` (a table keyed by primary fingerprints) names `primary`."""
    if not sa.inspect(connection).has_table(record.name):
        return False
    key = record.c.primary_fingerprint
    found = connection.execute(sa.select(key).where(key == fingerprint(primary))).first()
    return found is not None


def _copy(source: Connection, primary: Engine) -> tuple[PromotionReport, list[str]]:
    seen = inserted = updated = kept = 0
    conflicts: list[str] = []
    rows = source.execute(sa.select(*_COLUMNS).order_by(_TASKS.c.id))
    while batch := [TaskRecord._make(row) for row in rows.fetchmany(DEFAULT_BATCH_SIZE)]:
        with primary.begin() as target:
            counts = upsert_tasks(target, batch)
        seen += len(batch)
        inserted += counts.inserted
        updated += counts.updated
        kept += counts.unchanged + counts.skipped
        conflicts += counts.conflict_ids
    return PromotionReport(seen, inserted, updated, kept, len(conflicts)), conflicts
